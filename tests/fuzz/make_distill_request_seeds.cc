// Writes a seed corpus for distill_request_fuzzer into the directory given as
// the only argument: valid image and token requests (single and multi-part)
// and a few near misses, so the fuzzer starts past the parser.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "tests/fuzz/distill_request_fuzz_format.h"

namespace retort::fuzz {
namespace {

v1::DistillRequest ImageRequest(uint64_t sequence, int64_t rows, float pixel) {
  v1::DistillRequest r;
  r.set_sequence(sequence);
  r.set_temperature(4.0);
  r.set_output(v1::OUTPUT_DENSE);
  r.set_value_dtype(v1::DTYPE_FLOAT32);
  v1::Tensor* in = r.mutable_inputs();
  in->set_dtype(v1::DTYPE_FLOAT32);
  for (int64_t d : {rows, int64_t{1}, int64_t{28}, int64_t{28}}) in->add_shape(d);
  std::vector<float> pixels(static_cast<size_t>(rows * 784), pixel);
  in->set_data(std::string(reinterpret_cast<const char*>(pixels.data()), 4 * pixels.size()));
  return r;
}

v1::DistillRequest TokenRequest(uint64_t sequence, int64_t rows, int64_t length, int32_t id) {
  v1::DistillRequest r;
  r.set_sequence(sequence);
  r.set_temperature(1.0);
  r.set_output(v1::OUTPUT_TOP_K);
  r.set_top_k(5);
  r.set_value_dtype(v1::DTYPE_BFLOAT16);
  v1::Tensor* in = r.mutable_inputs();
  in->set_dtype(v1::DTYPE_INT32);
  in->add_shape(rows);
  in->add_shape(length);
  std::vector<int32_t> ids(static_cast<size_t>(rows * length), id);
  in->set_data(std::string(reinterpret_cast<const char*>(ids.data()), 4 * ids.size()));
  return r;
}

// Part 0 keeps every field and the first half of the data; part 1 only the
// sequence, its number and the rest.
std::vector<v1::DistillRequest> SplitInTwo(const v1::DistillRequest& whole) {
  const std::string& data = whole.inputs().data();
  v1::DistillRequest head = whole, tail;
  head.set_part_count(2);
  head.mutable_inputs()->set_data(data.substr(0, data.size() / 2));
  tail.set_sequence(whole.sequence());
  tail.set_part(1);
  tail.mutable_inputs()->set_data(data.substr(data.size() / 2));
  return {head, tail};
}

std::string Seed(uint8_t config, const std::vector<v1::DistillRequest>& parts) {
  std::string out(1, static_cast<char>(config));
  for (const v1::DistillRequest& p : parts) AppendFrame(p, &out);
  return out;
}

int WriteSeeds(const std::string& dir) {
  // Config 0x2B: 4 pending, 64 KiB requests, 64 rows, max_top_k 64.
  const uint8_t config = 0x2B;
  v1::DistillRequest with_hidden = ImageRequest(3, 1, 0.25f);
  with_hidden.add_hidden_layers("fc1");
  with_hidden.set_output(v1::OUTPUT_TOP_K);
  with_hidden.set_top_k(3);
  v1::DistillRequest nan_input = ImageRequest(4, 1, std::numeric_limits<float>::quiet_NaN());
  v1::DistillRequest bad_token = TokenRequest(5, 2, 8, 1000);
  std::vector<v1::DistillRequest> image_parts = SplitInTwo(ImageRequest(6, 2, 0.5f));
  std::vector<v1::DistillRequest> token_parts = SplitInTwo(TokenRequest(7, 4, 64, 42));
  std::vector<v1::DistillRequest> interleaved = {image_parts[0], token_parts[0], image_parts[1],
                                                 token_parts[1]};
  const std::vector<std::pair<std::string, std::string>> seeds = {
      {"image_dense", Seed(config, {ImageRequest(1, 1, 0.5f)})},
      {"token_topk", Seed(config, {TokenRequest(2, 3, 16, 7)})},
      {"image_hidden_topk", Seed(config, {with_hidden})},
      {"image_nan", Seed(config, {nan_input})},
      {"token_out_of_vocab", Seed(config, {bad_token})},
      {"image_two_parts", Seed(config, image_parts)},
      {"token_two_parts", Seed(config, token_parts)},
      {"interleaved_parts", Seed(config, interleaved)},
      {"part_zero_twice", Seed(config, {image_parts[0], image_parts[0]})},
      {"tail_without_head", Seed(config, {token_parts[1]})},
      {"small_limits", Seed(0x00, {image_parts[0], token_parts[0]})},
  };
  for (const auto& [name, bytes] : seeds) {
    const std::string path = dir + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      return 1;
    }
  }
  std::printf("wrote %zu seeds to %s\n", seeds.size(), dir.c_str());
  return 0;
}

}  // namespace
}  // namespace retort::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus directory>\n", argv[0]);
    return 2;
  }
  return retort::fuzz::WriteSeeds(argv[1]);
}
