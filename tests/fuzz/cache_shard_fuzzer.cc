// libFuzzer target for the teacher-logit cache's shard reader: arbitrary
// bytes as a shard (cache/cache_shard.h), then every record it admits read
// with its checksum and decoded (cache/record_decoder.h). Nothing may crash,
// read out of bounds or hang; every rejection is a Status.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cache/cache_shard.h"
#include "cache/record_decoder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace retort::cache;
  absl::StatusOr<std::unique_ptr<CacheShard>> shard =
      CacheShard::FromBytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!shard.ok()) return 0;
  const ShardParams& p = (*shard)->params();
  // Keep the decode buffers small: the header's sizes are not bounded by
  // the file's (records may claim anything a record's bits can hold).
  if (p.positions > 4096 || p.encoding.top_k > 4096) return 0;
  for (int64_t i = 0; i < (*shard)->sequences() && i < 64; ++i) {
    (void)(*shard)->key(i);
    absl::StatusOr<RecordView> record = (*shard)->Record(i);
    if (!record.ok()) continue;
    const std::vector<RecordView> records = {*record};
    auto name = [](size_t) { return std::string("record"); };
    absl::StatusOr<int64_t> width = DecodedWidth(records, p.positions, p.encoding, p.vocab, name);
    if (!width.ok() || *width * p.positions > (int64_t{1} << 20)) continue;
    std::vector<int64_t> ids(static_cast<size_t>(*width * p.positions));
    std::vector<float> values(ids.size());
    std::vector<float> tail(static_cast<size_t>(p.positions));
    (void)DecodeRecordsInto(records, p.positions, p.encoding, p.vocab, name, *width, ids.data(),
                            values.data(), tail.data());
  }
  return 0;
}
