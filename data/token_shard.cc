#include "data/token_shard.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace retort::data {
namespace {

void PutU32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
void PutU64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint32_t GetU32(const unsigned char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t GetU64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint32_t Crc(uint32_t crc, const unsigned char* data, size_t n) {
  while (n > 0) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    crc = static_cast<uint32_t>(crc32(crc, data, chunk));
    data += chunk;
    n -= chunk;
  }
  return crc;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenShardWriter>> TokenShardWriter::Create(const std::string& path,
                                                                           uint32_t vocab_size) {
  if (vocab_size == 0)
    return absl::InvalidArgumentError("a token shard needs a vocabulary size > 0");
  std::unique_ptr<TokenShardWriter> w(new TokenShardWriter());
  w->path_ = path;
  w->temp_path_ = absl::StrCat(path, ".tmp.", ::getpid());
  w->vocab_size_ = vocab_size;
  w->width_ = vocab_size <= 65536 ? 2 : 4;
  w->file_ = std::fopen(w->temp_path_.c_str(), "wb");
  if (w->file_ == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", w->temp_path_, ": ", std::strerror(errno)));
  }
  const unsigned char zeros[kTokenShardHeaderBytes] = {};
  if (std::fwrite(zeros, 1, sizeof(zeros), w->file_) != sizeof(zeros)) {
    return absl::DataLossError(absl::StrCat("writing ", w->temp_path_, " failed"));
  }
  w->crc_ = static_cast<uint32_t>(crc32(0, nullptr, 0));
  return w;
}

TokenShardWriter::~TokenShardWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove(temp_path_.c_str());
  }
}

absl::Status TokenShardWriter::Append(absl::Span<const uint32_t> tokens) {
  if (file_ == nullptr) return absl::FailedPreconditionError("the shard is already finished");
  std::vector<unsigned char> bytes(tokens.size() * width_);
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] >= vocab_size_) {
      return absl::InvalidArgumentError(absl::StrCat("token ", tokens[i], " at position ",
                                                     count_ + i, " is outside the vocabulary of ",
                                                     vocab_size_));
    }
    for (uint32_t b = 0; b < width_; ++b) {
      bytes[i * width_ + b] = static_cast<unsigned char>(tokens[i] >> (8 * b));
    }
  }
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
    return absl::DataLossError(
        absl::StrCat("writing ", temp_path_, " failed: ", std::strerror(errno)));
  }
  crc_ = Crc(crc_, bytes.data(), bytes.size());
  count_ += tokens.size();
  return absl::OkStatus();
}

absl::Status TokenShardWriter::Finish() {
  if (file_ == nullptr) return absl::FailedPreconditionError("the shard is already finished");
  unsigned char header[kTokenShardHeaderBytes] = {};
  std::memcpy(header, kTokenShardMagic, 8);
  PutU32(header + 8, kTokenShardVersion);
  PutU32(header + 12, width_);
  PutU64(header + 16, count_);
  PutU32(header + 24, vocab_size_);
  PutU32(header + 28, crc_);
  const bool ok = std::fseek(file_, 0, SEEK_SET) == 0 &&
                  std::fwrite(header, 1, sizeof(header), file_) == sizeof(header) &&
                  std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!ok || !closed) {
    std::remove(temp_path_.c_str());
    return absl::DataLossError(
        absl::StrCat("writing ", temp_path_, " failed: ", std::strerror(errno)));
  }
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    std::remove(temp_path_.c_str());
    return absl::DataLossError(
        absl::StrCat("renaming ", temp_path_, " to ", path_, ": ", std::strerror(errno)));
  }
  const size_t slash = path_.rfind('/');
  return SyncPath(slash == std::string::npos ? "." : path_.substr(0, slash));
}

absl::StatusOr<std::unique_ptr<TokenShard>> TokenShard::Open(const std::string& path) {
  auto bad = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat(path, ": not a valid token shard: ", what,
                                            "; rebuild it with `retort data prepare`"));
  };
  absl::StatusOr<std::shared_ptr<MappedFile>> mapped = MappedFile::Map(path);
  if (!mapped.ok()) {
    if (absl::IsNotFound(mapped.status())) {
      return absl::NotFoundError(absl::StrCat("token shard: ", mapped.status().message()));
    }
    return mapped.status();
  }
  const size_t size = (*mapped)->size();
  if (size < kTokenShardHeaderBytes) {
    return bad(absl::StrCat(size, " bytes, shorter than the 32-byte header"));
  }
  std::unique_ptr<TokenShard> shard(new TokenShard());
  shard->path_ = path;
  shard->file_ = *std::move(mapped);
  shard->map_ = reinterpret_cast<const unsigned char*>(shard->file_->data());
  shard->map_size_ = size;
  const unsigned char* h = shard->map_;
  if (std::memcmp(h, kTokenShardMagic, 8) != 0) return bad("wrong magic (not RTTOKENS)");
  const uint32_t version = GetU32(h + 8);
  if (version != kTokenShardVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": token shard version ", version,
                     " is not supported (this build reads version ", kTokenShardVersion, ")"));
  }
  shard->width_ = GetU32(h + 12);
  if (shard->width_ != 2 && shard->width_ != 4) {
    return bad(absl::StrCat("token width ", shard->width_, " (must be 2 or 4)"));
  }
  shard->count_ = GetU64(h + 16);
  shard->vocab_size_ = GetU32(h + 24);
  if (shard->vocab_size_ == 0) return bad("vocabulary size 0");
  const uint64_t payload = size - kTokenShardHeaderBytes;
  if (shard->count_ > payload / shard->width_ || shard->count_ * shard->width_ != payload) {
    return bad(absl::StrCat("the header says ", shard->count_, " tokens of ", shard->width_,
                            " bytes but the file holds ", payload,
                            " bytes of tokens (truncated?)"));
  }
  const uint32_t crc =
      Crc(static_cast<uint32_t>(crc32(0, nullptr, 0)), h + kTokenShardHeaderBytes, payload);
  if (crc != GetU32(h + 28)) return bad("checksum mismatch (corrupted)");
  for (uint64_t i = 0; i < shard->count_; ++i) {
    if (shard->at(i) >= shard->vocab_size_) {
      return bad(absl::StrCat("token ", shard->at(i), " at position ", i,
                              " is outside the vocabulary of ", shard->vocab_size_));
    }
  }
  return shard;
}

TokenShard::~TokenShard() = default;

uint32_t TokenShard::at(uint64_t i) const {
  const unsigned char* p = map_ + kTokenShardHeaderBytes + i * width_;
  return width_ == 2 ? static_cast<uint32_t>(p[0] | (p[1] << 8)) : GetU32(p);
}

absl::StatusOr<std::vector<int64_t>> TokenShard::Read(uint64_t begin, uint64_t n) const {
  if (begin > count_ || n > count_ - begin) {
    return absl::OutOfRangeError(
        absl::StrCat("tokens [", begin, ", ", begin + n, ") of ", path_, " which holds ", count_));
  }
  std::vector<int64_t> out(n);
  for (uint64_t i = 0; i < n; ++i) out[i] = at(begin + i);
  return out;
}

}  // namespace retort::data
