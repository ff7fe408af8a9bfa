// Token shards: a tokenized corpus on disk, read through a memory map.
//
// Layout (little-endian), 32-byte header then the tokens:
//   0  magic "RTTOKENS"        16 token count (u64)
//   8  version (u32) = 1       24 vocabulary size (u32): every token is below it
//   12 token width (u32): 2 (u16 tokens) or 4 (u32 tokens)
//   28 CRC-32 (zlib) of the token bytes (u32)
//
// TokenShardWriter streams tokens into a temporary file and on Finish
// patches the header, fsyncs and renames it into place, so a reader never
// sees a partial shard. TokenShard::Open checks everything before use: the
// magic, version and width, that the file is exactly header + count * width
// bytes, the checksum, and every token against the vocabulary; a bad file
// gets DATA_LOSS (or FAILED_PRECONDITION for a newer version) naming the
// file and the problem.
#ifndef RETORT_DATA_TOKEN_SHARD_H_
#define RETORT_DATA_TOKEN_SHARD_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/mapped_file.h"

namespace retort::data {

inline constexpr char kTokenShardMagic[8] = {'R', 'T', 'T', 'O', 'K', 'E', 'N', 'S'};
inline constexpr uint32_t kTokenShardVersion = 1;
inline constexpr size_t kTokenShardHeaderBytes = 32;

class TokenShardWriter {
 public:
  // Width 2 when the vocabulary fits 16 bits, else 4.
  static absl::StatusOr<std::unique_ptr<TokenShardWriter>> Create(const std::string& path,
                                                                  uint32_t vocab_size);
  ~TokenShardWriter();  // without Finish, the temporary file is removed

  // INVALID_ARGUMENT for a token >= the vocabulary size (nothing written).
  absl::Status Append(absl::Span<const uint32_t> tokens);
  absl::Status Finish();
  uint64_t count() const { return count_; }

 private:
  TokenShardWriter() = default;
  std::string path_, temp_path_;
  std::FILE* file_ = nullptr;
  uint32_t vocab_size_ = 0;
  uint32_t width_ = 4;
  uint64_t count_ = 0;
  uint32_t crc_ = 0;
};

class TokenShard {
 public:
  static absl::StatusOr<std::unique_ptr<TokenShard>> Open(const std::string& path);
  ~TokenShard();
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  uint64_t size() const { return count_; }
  uint32_t vocab_size() const { return vocab_size_; }
  uint32_t token_width() const { return width_; }
  uint32_t at(uint64_t i) const;  // i < size()
  // Tokens [begin, begin + n) as int64 (what embedding lookups take);
  // OUT_OF_RANGE past the end.
  absl::StatusOr<std::vector<int64_t>> Read(uint64_t begin, uint64_t n) const;
  const std::string& path() const { return path_; }

 private:
  TokenShard() = default;
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  const unsigned char* map_ = nullptr;  // file_'s bytes
  size_t map_size_ = 0;
  uint64_t count_ = 0;
  uint32_t vocab_size_ = 0;
  uint32_t width_ = 0;
};

}  // namespace retort::data

#endif  // RETORT_DATA_TOKEN_SHARD_H_
