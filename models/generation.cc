#include "models/generation.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/torch_status.h"

namespace retort::models {
namespace {

// One token per row from logits float32 [B, vocab].
torch::Tensor SampleRows(torch::Tensor logits, const GenerationOptions& o,
                         at::Generator& generator) {
  if (o.temperature == 0) return logits.argmax(1);
  logits = logits / o.temperature;
  const int64_t vocab = logits.size(1);
  if (o.top_k > 0 && o.top_k < vocab) {
    const torch::Tensor kth = std::get<0>(logits.topk(o.top_k, 1)).narrow(1, o.top_k - 1, 1);
    logits = logits.masked_fill(logits < kth, -INFINITY);
  }
  if (o.top_p < 1.0) {
    // Keep the most likely tokens until their mass reaches top_p: a token
    // goes when the mass before it already does (the first always stays).
    auto [sorted, order] = logits.sort(1, /*descending=*/true);
    const torch::Tensor probs = torch::softmax(sorted, 1);
    const torch::Tensor before = probs.cumsum(1) - probs;
    const torch::Tensor drop_sorted = before >= o.top_p;
    const torch::Tensor drop = torch::zeros_like(drop_sorted).scatter(1, order, drop_sorted);
    logits = logits.masked_fill(drop, -INFINITY);
  }
  return at::multinomial(torch::softmax(logits, 1), 1, false, generator).squeeze(1);
}

}  // namespace

absl::Status ValidateGenerationOptions(const GenerationOptions& o, int64_t vocab_size) {
  if (o.max_new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens is ", o.max_new_tokens, "; it must not be negative"));
  }
  if (!(o.temperature >= 0) || !std::isfinite(o.temperature)) {
    return absl::InvalidArgumentError(absl::StrCat("sampling temperature is ", o.temperature,
                                                   "; give 0 (greedy) or a positive number"));
  }
  if (o.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k is ", o.top_k, "; give 0 (all tokens) or a positive number"));
  }
  if (!(o.top_p > 0 && o.top_p <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_p is ", o.top_p, "; it must be in (0, 1] (1: no nucleus cut)"));
  }
  if (o.stop_token < -1 || o.stop_token >= vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("stop token ", o.stop_token,
                                                   " is outside the vocabulary [0, ", vocab_size,
                                                   ") (-1: no stop token)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::vector<int64_t>>> Generate(
    CausalLm& model, const std::vector<std::vector<int64_t>>& prompts,
    const GenerationOptions& options) {
  const LlamaConfig& config = model.config();
  RETORT_RETURN_IF_ERROR(ValidateGenerationOptions(options, config.vocab_size));
  if (prompts.empty()) return std::vector<std::vector<int64_t>>();
  const int64_t window = config.max_position_embeddings;
  std::vector<std::vector<int64_t>> context;
  for (size_t r = 0; r < prompts.size(); ++r) {
    const std::vector<int64_t>& p = prompts[r];
    if (p.empty())
      return absl::InvalidArgumentError(absl::StrCat("prompt ", r, " holds no tokens"));
    for (int64_t id : p) {
      if (id < 0 || id >= config.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("prompt ", r, " holds token ", id,
                                                       ", outside the vocabulary [0, ",
                                                       config.vocab_size, ")"));
      }
    }
    context.push_back(p);
  }
  return TorchCall("generation", [&] {
    torch::InferenceMode guard;
    // The model's training mode is left alone (Llama-family models compute
    // the same in either), so generation may run beside a training step.
    at::Generator generator = at::detail::createCPUGenerator(options.seed);
    const int64_t b = static_cast<int64_t>(context.size());
    std::vector<std::vector<int64_t>> out(b);
    std::vector<bool> done(b, false);

    // The last `window` tokens of a row: what the model sees.
    auto visible = [&](int64_t r) {
      const std::vector<int64_t>& c = context[r];
      const int64_t n = std::min<int64_t>(window, c.size());
      return std::vector<int64_t>(c.end() - n, c.end());
    };
    // A fresh cache holding each row's visible tokens, left-padded to the
    // longest; the logits after each row's last token.
    std::unique_ptr<KvCache> cache;
    auto prefill = [&] {
      std::vector<std::vector<int64_t>> rows(b);
      int64_t longest = 0;
      for (int64_t r = 0; r < b; ++r) {
        rows[r] = visible(r);
        longest = std::max<int64_t>(longest, rows[r].size());
      }
      torch::Tensor tokens = torch::zeros({b, longest}, torch::kInt64);
      torch::Tensor valid = torch::zeros({b, longest}, torch::kBool);
      for (int64_t r = 0; r < b; ++r) {
        const int64_t n = static_cast<int64_t>(rows[r].size());
        tokens[r].narrow(0, longest - n, n).copy_(torch::tensor(rows[r], torch::kInt64));
        valid[r].narrow(0, longest - n, n).fill_(true);
      }
      cache = std::make_unique<KvCache>(config.num_hidden_layers);
      return model.Decode(tokens, valid, cache.get()).select(1, -1).to(torch::kFloat32);
    };
    // Recompute: a full forward pass over each row's visible tokens.
    auto recompute = [&] {
      std::vector<torch::Tensor> rows;
      for (int64_t r = 0; r < b; ++r) {
        const torch::Tensor ids = torch::tensor(visible(r), torch::kInt64).unsqueeze(0);
        rows.push_back(model.forward(ids).select(1, -1).squeeze(0));
      }
      return torch::stack(rows).to(torch::kFloat32);
    };
    auto next_logits = [&](const torch::Tensor& step_tokens, const torch::Tensor& step_valid) {
      if (!options.use_cache) return recompute();
      // Past the model's positions the cache starts over from the visible
      // tokens (each further token then costs a full pass, as recomputing).
      if (cache->lengths().max().item<int64_t>() + 1 > window) return prefill();
      return model.Decode(step_tokens, step_valid, cache.get()).select(1, -1).to(torch::kFloat32);
    };

    torch::Tensor logits = options.use_cache ? prefill() : recompute();
    for (int64_t i = 0; i < options.max_new_tokens; ++i) {
      const torch::Tensor next = SampleRows(logits, options, generator);
      const int64_t* ids = next.data_ptr<int64_t>();
      bool all_done = true;
      std::vector<bool> fed(b);
      for (int64_t r = 0; r < b; ++r) {
        fed[r] = !done[r];
        if (!done[r]) {
          out[r].push_back(ids[r]);
          context[r].push_back(ids[r]);
          if (ids[r] == options.stop_token) done[r] = true;
        }
        all_done = all_done && done[r];
      }
      if (all_done || i + 1 == options.max_new_tokens) break;
      // Rows that stopped keep stepping with a masked token.
      torch::Tensor step_valid = torch::zeros({b, 1}, torch::kBool);
      for (int64_t r = 0; r < b; ++r) step_valid[r][0] = fed[r] && !done[r];
      logits = next_logits(next.unsqueeze(1), step_valid);
    }
    return out;
  });
}

}  // namespace retort::models
