#include "teacher/wire_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "teacher/request_validation.h"

namespace retort::teacher {
namespace {

// Room left in each message for fields other than tensor bytes.
constexpr int64_t kMessageOverheadBytes = 4096;

torch::Tensor Narrow(const torch::Tensor& t, int64_t begin, int64_t count) {
  return t.narrow(0, begin, count);
}

int64_t PositionsPerMessage(int64_t bytes_per_position, int64_t max_message_bytes) {
  const int64_t budget = std::max<int64_t>(max_message_bytes - kMessageOverheadBytes, 1);
  return std::max<int64_t>(1, budget / std::max<int64_t>(bytes_per_position, 1));
}

}  // namespace

absl::StatusOr<OutputSpec> OutputSpec::Parse(const std::string& kind, int32_t top_k,
                                             const std::string& value_dtype) {
  OutputSpec spec;
  if (kind == "dense") {
    spec.kind = v1::OUTPUT_DENSE;
  } else if (kind == "topk") {
    spec.kind = v1::OUTPUT_TOP_K;
    spec.top_k = top_k;
    if (top_k < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--teacher_top_k must be at least 1 with topk output, got ", top_k));
    }
  } else if (kind == "sampled") {
    spec.kind = v1::OUTPUT_SAMPLED;
    spec.samples = top_k;
    if (top_k < 1 || top_k > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("--teacher_samples must be in 1..65535 with sampled output, got ", top_k));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--teacher_output must be dense or topk, got '", kind, "'"));
  }
  if (value_dtype == "fp32") {
    spec.value_dtype = v1::DTYPE_FLOAT32;
  } else if (value_dtype == "fp16") {
    spec.value_dtype = v1::DTYPE_FLOAT16;
  } else if (value_dtype == "bf16") {
    spec.value_dtype = v1::DTYPE_BFLOAT16;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--teacher_value_dtype must be fp32, fp16 or bf16, got '", value_dtype, "'"));
  }
  return spec;
}

std::string OutputSpec::Describe() const {
  std::string dtype = value_dtype == v1::DTYPE_FLOAT16    ? "fp16"
                      : value_dtype == v1::DTYPE_BFLOAT16 ? "bf16"
                                                          : "fp32";
  if (kind == v1::OUTPUT_TOP_K) return absl::StrCat("top-", top_k, " ", dtype);
  if (kind == v1::OUTPUT_SAMPLED) return absl::StrCat("sampled N=", samples);
  return absl::StrCat("dense ", dtype);
}

absl::StatusOr<torch::ScalarType> TorchDType(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_FLOAT32:
      return torch::kFloat32;
    case v1::DTYPE_FLOAT16:
      return torch::kFloat16;
    case v1::DTYPE_BFLOAT16:
      return torch::kBFloat16;
    case v1::DTYPE_INT32:
      return torch::kInt32;
    case v1::DTYPE_INT64:
      return torch::kInt64;
    case v1::DTYPE_UINT8:
      return torch::kUInt8;
    case v1::DTYPE_UINT16:
      return torch::kInt16;  // same bytes; read back as unsigned
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("no tensor type for wire dtype ", DTypeName(dtype)));
  }
}

void TensorToWire(const torch::Tensor& tensor, v1::DType dtype, v1::Tensor* out) {
  torch::ScalarType type = *TorchDType(dtype);
  torch::Tensor t = tensor;
  if (dtype == v1::DTYPE_UINT16) {
    // Values in [0, 65536) keep their low 16 bits.
    t = t.to(torch::kInt32).to(torch::kInt16);
  } else {
    t = t.to(type);
  }
  t = t.contiguous();
  out->set_dtype(dtype);
  out->clear_shape();
  for (int64_t d : tensor.sizes()) out->add_shape(d);
  out->set_data(static_cast<const char*>(t.data_ptr()), t.nbytes());
}

absl::StatusOr<torch::Tensor> TensorFromWire(const v1::Tensor& tensor, const std::string& what) {
  RETORT_RETURN_IF_ERROR(ValidateWireTensor(tensor, what));
  RETORT_ASSIGN_OR_RETURN(torch::ScalarType type, TorchDType(tensor.dtype()));
  std::vector<int64_t> shape(tensor.shape().begin(), tensor.shape().end());
  return TorchCall(what, [&] {
    // from_blob does not own the bytes; the conversions below copy them.
    torch::Tensor raw = torch::from_blob(const_cast<char*>(tensor.data().data()), shape,
                                         torch::TensorOptions().dtype(type));
    switch (tensor.dtype()) {
      case v1::DTYPE_FLOAT32:
        return raw.clone();
      case v1::DTYPE_FLOAT16:
      case v1::DTYPE_BFLOAT16:
        return raw.to(torch::kFloat32);
      case v1::DTYPE_UINT16:
        return raw.to(torch::kInt64).bitwise_and(0xFFFF);
      default:
        return raw.to(torch::kInt64);
    }
  });
}

std::vector<v1::DistillRequest> EncodeRequest(uint64_t sequence, const torch::Tensor& inputs,
                                              double temperature, const OutputSpec& output,
                                              const std::vector<std::string>& hidden_layers,
                                              const torch::Tensor& query_ids,
                                              int64_t max_message_bytes) {
  const bool tokens = !inputs.is_floating_point();
  const v1::DType dtype = tokens ? v1::DTYPE_INT32 : v1::DTYPE_FLOAT32;
  const int64_t rows = inputs.size(0);
  const bool query = query_ids.defined();
  const int64_t row_bytes =
      4 * (rows == 0 ? 0 : (inputs.numel() + (query ? query_ids.numel() : 0)) / rows);
  const int64_t per_part = PositionsPerMessage(row_bytes, max_message_bytes);
  const int64_t parts = std::max<int64_t>(1, (rows + per_part - 1) / per_part);
  std::vector<v1::DistillRequest> out(static_cast<size_t>(parts));
  for (int64_t p = 0; p < parts; ++p) {
    v1::DistillRequest& r = out[static_cast<size_t>(p)];
    r.set_sequence(sequence);
    r.set_part(static_cast<uint32_t>(p));
    r.set_part_count(static_cast<uint32_t>(parts));
    const int64_t begin = p * per_part, count = std::min(per_part, rows - begin);
    v1::Tensor slice;
    TensorToWire(Narrow(inputs, begin, count), dtype, &slice);
    v1::Tensor query_slice;
    if (query) TensorToWire(Narrow(query_ids, begin, count), v1::DTYPE_INT32, &query_slice);
    if (p == 0) {
      if (query) {
        *r.mutable_query_ids() = std::move(query_slice);
        r.mutable_query_ids()->clear_shape();
        for (int64_t d : query_ids.sizes()) r.mutable_query_ids()->add_shape(d);
      }
      *r.mutable_inputs() = std::move(slice);
      r.mutable_inputs()->clear_shape();
      for (int64_t d : inputs.sizes()) r.mutable_inputs()->add_shape(d);
      r.set_temperature(temperature);
      r.set_output(output.kind);
      r.set_top_k(output.kind == v1::OUTPUT_TOP_K ? output.top_k : 0);
      r.set_samples(output.kind == v1::OUTPUT_SAMPLED ? output.samples : 0);
      r.set_value_dtype(output.value_dtype);
      for (const std::string& h : hidden_layers) r.add_hidden_layers(h);
    } else {
      r.mutable_inputs()->set_data(std::move(*slice.mutable_data()));
      if (query) r.mutable_query_ids()->set_data(std::move(*query_slice.mutable_data()));
    }
  }
  return out;
}

absl::StatusOr<torch::Tensor> RequestQueryIds(const v1::DistillRequest& request) {
  if (!request.has_query_ids()) return torch::Tensor();
  RETORT_ASSIGN_OR_RETURN(
      torch::Tensor ids,
      TensorFromWire(request.query_ids(),
                     absl::StrCat("request ", request.sequence(), " query ids")));
  return ids.reshape({-1, ids.size(-1)});
}

absl::StatusOr<torch::Tensor> RequestInputs(const v1::DistillRequest& request) {
  return TensorFromWire(request.inputs(), absl::StrCat("request ", request.sequence(), " inputs"));
}

std::vector<v1::DistillResponse> EncodeAnswer(uint64_t sequence, const Answer& answer,
                                              const OutputSpec& output, int64_t max_message_bytes) {
  const int64_t positions = answer.log_probs.size(0);
  const int64_t classes = answer.log_probs.size(1);
  const int64_t value_bytes = DTypeSize(output.value_dtype);
  const bool top_k = output.kind == v1::OUTPUT_TOP_K;
  const bool sampled = output.kind == v1::OUTPUT_SAMPLED;
  const v1::DType index_dtype = classes <= 65536 ? v1::DTYPE_UINT16 : v1::DTYPE_INT32;
  int64_t bytes_per_position = top_k     ? output.top_k * (value_bytes + DTypeSize(index_dtype)) + 4
                               : sampled ? answer.sampled.ids.size(1) * (DTypeSize(index_dtype) + 2)
                                         : classes * value_bytes;
  for (const auto& [name, h] : answer.hidden) {
    bytes_per_position += (positions == 0 ? 0 : h.numel() / positions) * value_bytes;
  }
  const bool query = answer.query_log_probs.defined();
  if (query) bytes_per_position += 4 * answer.query_log_probs.size(1);
  TopKLogProbs sparse;
  if (top_k) sparse = TopK(answer.log_probs, output.top_k);
  const int64_t per_part = PositionsPerMessage(bytes_per_position, max_message_bytes);
  const int64_t parts = std::max<int64_t>(1, (positions + per_part - 1) / per_part);
  std::vector<v1::DistillResponse> out(static_cast<size_t>(parts));
  for (int64_t p = 0; p < parts; ++p) {
    v1::DistillResponse& r = out[static_cast<size_t>(p)];
    r.set_sequence(sequence);
    r.set_part(static_cast<uint32_t>(p));
    r.set_part_count(static_cast<uint32_t>(parts));
    r.set_num_classes(classes);
    const int64_t begin = p * per_part, count = std::min(per_part, positions - begin);
    v1::LogProbBlock* block = r.mutable_log_probs();
    block->set_position_offset(begin);
    block->set_positions(count);
    if (sampled) {
      TensorToWire(Narrow(answer.sampled.ids, begin, count), index_dtype,
                   block->mutable_top_k_indices());
      TensorToWire(Narrow(answer.sampled.counts, begin, count), v1::DTYPE_UINT16,
                   block->mutable_sample_counts());
    } else if (top_k) {
      TensorToWire(Narrow(sparse.indices, begin, count), index_dtype,
                   block->mutable_top_k_indices());
      TensorToWire(Narrow(sparse.values, begin, count), output.value_dtype,
                   block->mutable_top_k_values());
      TensorToWire(Narrow(sparse.tail_log_mass, begin, count), v1::DTYPE_FLOAT32,
                   block->mutable_tail_log_mass());
    } else {
      TensorToWire(Narrow(answer.log_probs, begin, count), output.value_dtype,
                   block->mutable_dense());
    }
    if (query) {
      TensorToWire(Narrow(answer.query_log_probs, begin, count), v1::DTYPE_FLOAT32,
                   block->mutable_query_log_probs());
    }
    for (const auto& [name, h] : answer.hidden) {
      v1::HiddenStateBlock* hb = r.add_hidden();
      hb->set_layer(name);
      TensorToWire(Narrow(h, begin, count), output.value_dtype, hb->mutable_values());
    }
  }
  return out;
}

absl::StatusOr<torch::Tensor> DecodeLogProbBlock(const v1::LogProbBlock& block,
                                                 int64_t num_classes) {
  const int64_t n = block.positions();
  if (block.has_dense()) {
    RETORT_ASSIGN_OR_RETURN(torch::Tensor dense, TensorFromWire(block.dense(), "dense values"));
    if (dense.dim() != 2 || dense.size(0) != n || dense.size(1) != num_classes) {
      return absl::DataLossError(absl::StrCat("dense values have shape [",
                                              absl::StrJoin(dense.sizes(), ","), "]",
                                              ", expected [", n, ",", num_classes, "]"));
    }
    return dense;
  }
  RETORT_ASSIGN_OR_RETURN(TopKLogProbs sparse, DecodeTopKBlock(block, num_classes));
  return sparse.ToDense(num_classes);
}

absl::StatusOr<SampledTargets> DecodeSampledBlock(const v1::LogProbBlock& block,
                                                  int64_t num_classes) {
  const int64_t n = block.positions();
  SampledTargets s;
  RETORT_ASSIGN_OR_RETURN(s.ids, TensorFromWire(block.top_k_indices(), "sampled ids"));
  RETORT_ASSIGN_OR_RETURN(torch::Tensor counts,
                          TensorFromWire(block.sample_counts(), "sample counts"));
  if (s.ids.dim() != 2 || s.ids.size(0) != n || !counts.sizes().equals(s.ids.sizes()) ||
      s.ids.size(1) < 1) {
    return absl::DataLossError(absl::StrCat("sampled block for ", n, " positions is inconsistent"));
  }
  if (n > 0 && (s.ids.min().item<int64_t>() < 0 || s.ids.max().item<int64_t>() >= num_classes ||
                counts.min().item<int64_t>() < 0)) {
    return absl::DataLossError(absl::StrCat("sampled ids fall outside [0, ", num_classes, ")"));
  }
  const torch::Tensor totals = counts.sum(1);
  if (n > 0 && !totals.eq(totals[0]).all().item<bool>()) {
    return absl::DataLossError("sampled positions hold different numbers of draws");
  }
  s.samples = n > 0 ? totals[0].item<int64_t>() : 0;
  s.counts = counts.to(torch::kInt32);
  return s;
}

absl::StatusOr<TopKLogProbs> DecodeTopKBlock(const v1::LogProbBlock& block, int64_t num_classes) {
  const int64_t n = block.positions();
  if (block.has_dense()) {
    return absl::DataLossError("expected a top-k block, got dense values");
  }
  if (block.has_sample_counts()) {
    RETORT_ASSIGN_OR_RETURN(SampledTargets s, DecodeSampledBlock(block, num_classes));
    return s.ToTopK();
  }
  TopKLogProbs sparse;
  RETORT_ASSIGN_OR_RETURN(sparse.indices, TensorFromWire(block.top_k_indices(), "top-k indices"));
  RETORT_ASSIGN_OR_RETURN(sparse.values, TensorFromWire(block.top_k_values(), "top-k values"));
  RETORT_ASSIGN_OR_RETURN(sparse.tail_log_mass,
                          TensorFromWire(block.tail_log_mass(), "tail log mass"));
  if (sparse.indices.dim() != 2 || sparse.indices.size(0) != n ||
      !sparse.values.sizes().equals(sparse.indices.sizes()) || sparse.tail_log_mass.dim() != 1 ||
      sparse.tail_log_mass.size(0) != n || sparse.indices.size(1) > num_classes) {
    return absl::DataLossError(absl::StrCat("top-k block for ", n, " positions is inconsistent"));
  }
  if (n > 0 && (sparse.indices.min().item<int64_t>() < 0 ||
                sparse.indices.max().item<int64_t>() >= num_classes)) {
    return absl::DataLossError(absl::StrCat("top-k indices fall outside [0, ", num_classes, ")"));
  }
  return sparse;
}

absl::StatusOr<std::optional<Answer>> AnswerAssembler::Add(const v1::DistillResponse& response) {
  if (response.error_code() != 0) {
    return absl::Status(static_cast<absl::StatusCode>(response.error_code()),
                        response.error_message());
  }
  const uint32_t count = std::max<uint32_t>(response.part_count(), 1);
  if (response.part() != next_part_ || response.part() >= count ||
      response.log_probs().position_offset() != positions_ || response.num_classes() < 1) {
    return absl::DataLossError(absl::StrCat("response ", response.sequence(), " part ",
                                            response.part(), " is out of order or inconsistent"));
  }
  if (response.log_probs().has_sample_counts()) {
    RETORT_ASSIGN_OR_RETURN(SampledTargets s,
                            DecodeSampledBlock(response.log_probs(), response.num_classes()));
    if (!sampled_.empty() && s.samples != sampled_.front().samples) {
      return absl::DataLossError("response parts hold different numbers of draws");
    }
    sampled_.push_back(std::move(s));
    classes_ = response.num_classes();
  } else if (keep_top_k_ && !response.log_probs().has_dense()) {
    RETORT_ASSIGN_OR_RETURN(TopKLogProbs sparse,
                            DecodeTopKBlock(response.log_probs(), response.num_classes()));
    top_k_.push_back(std::move(sparse));
  } else {
    RETORT_ASSIGN_OR_RETURN(torch::Tensor lp,
                            DecodeLogProbBlock(response.log_probs(), response.num_classes()));
    log_probs_.push_back(std::move(lp));
  }
  if (next_part_ > 0 && response.log_probs().has_query_log_probs() != !query_log_probs_.empty()) {
    return absl::DataLossError(
        absl::StrCat("response ", response.sequence(), " part ", response.part(),
                     " differs from part 0 in carrying query log-probabilities"));
  }
  if (response.log_probs().has_query_log_probs()) {
    RETORT_ASSIGN_OR_RETURN(torch::Tensor q, TensorFromWire(response.log_probs().query_log_probs(),
                                                            "query log-probabilities"));
    if (q.dim() != 2 || q.size(0) != response.log_probs().positions() ||
        (!query_log_probs_.empty() && q.size(1) != query_log_probs_.front().size(1))) {
      return absl::DataLossError(absl::StrCat(
          "query log-probabilities of response ", response.sequence(), " part ", response.part(),
          " have shape [", absl::StrJoin(q.sizes(), ","), "], inconsistent with its ",
          response.log_probs().positions(), " positions"));
    }
    query_log_probs_.push_back(std::move(q));
  }
  for (const v1::HiddenStateBlock& h : response.hidden()) {
    RETORT_ASSIGN_OR_RETURN(torch::Tensor values,
                            TensorFromWire(h.values(), absl::StrCat("hidden ", h.layer())));
    if (values.dim() < 1 || values.size(0) != response.log_probs().positions()) {
      return absl::DataLossError(
          absl::StrCat("hidden layer ", h.layer(), " has ", values.dim() ? values.size(0) : 0,
                       " positions, expected ", response.log_probs().positions()));
    }
    hidden_[h.layer()].push_back(std::move(values));
  }
  positions_ += response.log_probs().positions();
  ++next_part_;
  if (next_part_ < count) return std::optional<Answer>();
  for (const auto& [name, parts] : hidden_) {
    int64_t rows = 0;
    for (const torch::Tensor& t : parts) rows += t.size(0);
    if (rows != positions_) {
      return absl::DataLossError(
          absl::StrCat("hidden layer ", name, " covers ", rows, " positions of ", positions_));
    }
  }
  Answer answer;
  return TorchCall("joining response parts", [&] {
    if (static_cast<int>(!log_probs_.empty()) + static_cast<int>(!top_k_.empty()) +
            static_cast<int>(!sampled_.empty()) >
        1) {
      throw std::runtime_error("a response mixes dense, top-k and sampled parts");
    }
    if (!sampled_.empty()) {
      // Parts may differ in width (their most distinct ids): pad to the widest.
      int64_t width = 0;
      for (const SampledTargets& s : sampled_) width = std::max(width, s.ids.size(1));
      std::vector<torch::Tensor> ids, counts;
      for (const SampledTargets& s : sampled_) {
        const int64_t pad = width - s.ids.size(1);
        ids.push_back(torch::constant_pad_nd(s.ids, {0, pad}, 0));
        counts.push_back(torch::constant_pad_nd(s.counts, {0, pad}, 0));
      }
      answer.sampled.ids = torch::cat(ids, 0);
      answer.sampled.counts = torch::cat(counts, 0);
      answer.sampled.samples = sampled_.front().samples;
      if (keep_top_k_) {
        answer.top_k = answer.sampled.ToTopK();
      } else {
        answer.log_probs = answer.sampled.ToTopK().ToDense(classes_);
      }
    } else if (!top_k_.empty()) {
      std::vector<torch::Tensor> indices, values, tails;
      for (const TopKLogProbs& t : top_k_) {
        indices.push_back(t.indices);
        values.push_back(t.values);
        tails.push_back(t.tail_log_mass);
      }
      answer.top_k.indices = torch::cat(indices, 0);
      answer.top_k.values = torch::cat(values, 0);
      answer.top_k.tail_log_mass = torch::cat(tails, 0);
    } else {
      answer.log_probs = log_probs_.size() == 1 ? log_probs_[0] : torch::cat(log_probs_, 0);
    }
    for (auto& [name, parts] : hidden_) {
      answer.hidden[name] = parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
    }
    if (!query_log_probs_.empty()) answer.query_log_probs = torch::cat(query_log_probs_, 0);
    return std::optional<Answer>(std::move(answer));
  });
}

}  // namespace retort::teacher
