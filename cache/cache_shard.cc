#include "cache/cache_shard.h"

#include <zlib.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace retort::cache {
namespace {

constexpr char kMagic[8] = {'R', 'T', 'T', 'C', 'A', 'C', 'H', 'E'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 64;
constexpr size_t kEntryBytes = 24;

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t GetU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}
uint64_t GetU64(const uint8_t* p) {
  return static_cast<uint64_t>(GetU32(p)) | static_cast<uint64_t>(GetU32(p + 4)) << 32;
}
uint32_t Crc32(const uint8_t* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (size > 0) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = crc32(crc, data, chunk);
    data += chunk;
    size -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace

void ShardBuilder::Add(uint64_t row_key, std::string record) {
  keys_.push_back(row_key);
  records_.push_back(std::move(record));
}

std::string ShardBuilder::Finish() const {
  std::string out(kMagic, sizeof(kMagic));
  const EncodingOptions& e = params_.encoding;
  PutU32(&out, kVersion);
  PutU32(&out, e.kind == EncodingOptions::Kind::kTopK ? 1 : 2);
  PutU32(&out, static_cast<uint32_t>(params_.vocab));
  PutU32(&out, static_cast<uint32_t>(params_.positions));
  PutU32(&out, static_cast<uint32_t>(e.top_k));
  PutU32(&out, static_cast<uint32_t>(e.exact));
  PutU32(&out, static_cast<uint32_t>(e.value_bits));
  PutU32(&out, static_cast<uint32_t>(e.samples));
  PutU64(&out, static_cast<uint64_t>(params_.first_sequence));
  PutU64(&out, static_cast<uint64_t>(keys_.size()));
  PutU32(&out, Crc32(reinterpret_cast<const uint8_t*>(out.data()), out.size()));
  PutU32(&out, 0);
  uint64_t offset = 0;
  for (size_t i = 0; i < keys_.size(); ++i) {
    PutU64(&out, keys_[i]);
    PutU64(&out, offset);
    PutU32(&out, static_cast<uint32_t>(records_[i].size()));
    PutU32(&out, Crc32(reinterpret_cast<const uint8_t*>(records_[i].data()), records_[i].size()));
    offset += records_[i].size();
  }
  for (const std::string& r : records_) out += r;
  return out;
}

absl::StatusOr<std::unique_ptr<CacheShard>> CacheShard::Open(const std::string& path) {
  absl::StatusOr<std::shared_ptr<MappedFile>> file = MappedFile::Map(path);
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrCat("teacher cache shard: ", file.status().message()));
  }
  std::unique_ptr<CacheShard> shard(new CacheShard());
  shard->name_ = path;
  shard->file_ = *std::move(file);
  shard->data_ = reinterpret_cast<const uint8_t*>(shard->file_->data());
  shard->size_ = shard->file_->size();
  if (absl::Status parsed = shard->Parse(); !parsed.ok()) return parsed;
  return shard;
}

absl::StatusOr<std::unique_ptr<CacheShard>> CacheShard::FromBytes(std::string bytes,
                                                                  const std::string& name) {
  std::unique_ptr<CacheShard> shard(new CacheShard());
  shard->name_ = name;
  shard->bytes_ = std::move(bytes);
  shard->data_ = reinterpret_cast<const uint8_t*>(shard->bytes_.data());
  shard->size_ = shard->bytes_.size();
  if (absl::Status parsed = shard->Parse(); !parsed.ok()) return parsed;
  return shard;
}

absl::Status CacheShard::Parse() {
  auto bad = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat(name_, ": not a valid teacher cache shard: ", what,
                                            "; delete it and rerun `retort teacher dump`, which "
                                            "rewrites missing shards"));
  };
  if (size_ < kHeaderBytes) return bad(absl::StrCat(size_, " bytes, shorter than the header"));
  if (std::memcmp(data_, kMagic, sizeof(kMagic)) != 0) return bad("wrong magic");
  if (GetU32(data_ + 56) != Crc32(data_, 56)) return bad("header checksum mismatch");
  const uint32_t version = GetU32(data_ + 8);
  if (version != kVersion) {
    return absl::FailedPreconditionError(absl::StrCat(name_, ": teacher cache shard version ",
                                                      version, ", this build reads ", kVersion));
  }
  const uint32_t kind = GetU32(data_ + 12);
  if (kind != 1 && kind != 2) return bad(absl::StrCat("unknown encoding ", kind));
  EncodingOptions& e = params_.encoding;
  e.kind = kind == 1 ? EncodingOptions::Kind::kTopK : EncodingOptions::Kind::kSampled;
  params_.vocab = GetU32(data_ + 16);
  params_.positions = GetU32(data_ + 20);
  e.top_k = static_cast<int32_t>(GetU32(data_ + 24));
  e.exact = static_cast<int32_t>(GetU32(data_ + 28));
  e.value_bits = static_cast<int32_t>(GetU32(data_ + 32));
  e.samples = static_cast<int32_t>(GetU32(data_ + 36));
  const uint64_t first = GetU64(data_ + 40);
  const uint64_t count = GetU64(data_ + 48);
  if (absl::Status valid = e.Validate(); !valid.ok()) return bad(std::string(valid.message()));
  if (params_.vocab < 2 || params_.positions < 1) {
    return bad(absl::StrCat("vocabulary ", params_.vocab, ", ", params_.positions, " positions"));
  }
  if (e.kind == EncodingOptions::Kind::kTopK && e.top_k > params_.vocab) {
    return bad(absl::StrCat("top-", e.top_k, " of a vocabulary of ", params_.vocab));
  }
  if (first > (uint64_t{1} << 48) || count > (size_ - kHeaderBytes) / kEntryBytes) {
    return bad(absl::StrCat(count, " sequences from ", first, " do not fit ", size_, " bytes"));
  }
  params_.first_sequence = static_cast<int64_t>(first);
  sequences_ = static_cast<int64_t>(count);
  const size_t records = kHeaderBytes + count * kEntryBytes;
  uint64_t expected = 0;
  for (uint64_t i = 0; i < count; ++i) {
    const uint8_t* entry = data_ + kHeaderBytes + i * kEntryBytes;
    if (GetU64(entry + 8) != expected) {
      return bad(absl::StrCat("sequence ", first + i, ": record at offset ", GetU64(entry + 8),
                              ", expected ", expected));
    }
    expected += GetU32(entry + 16);
    if (expected > size_ - records) {
      return bad(
          absl::StrCat("sequence ", first + i, ": record past the end of the file (truncated?)"));
    }
  }
  if (records + expected != size_) {
    return bad(absl::StrCat(size_ - records - expected, " bytes after the last record"));
  }
  return absl::OkStatus();
}

uint64_t CacheShard::key(int64_t i) const { return GetU64(data_ + kHeaderBytes + i * kEntryBytes); }

absl::StatusOr<RecordView> CacheShard::Record(int64_t i) const {
  const uint8_t* entry = data_ + kHeaderBytes + i * kEntryBytes;
  RecordView view;
  view.data = data_ + kHeaderBytes + sequences_ * kEntryBytes + GetU64(entry + 8);
  view.size = GetU32(entry + 16);
  if (Crc32(view.data, view.size) != GetU32(entry + 20)) {
    return absl::DataLossError(
        absl::StrCat(name_, ": sequence ", params_.first_sequence + i, " (record ", i,
                     "): checksum mismatch; delete the shard and rerun `retort teacher dump`"));
  }
  return view;
}

}  // namespace retort::cache
