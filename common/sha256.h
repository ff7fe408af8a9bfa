// SHA-256 digests (OpenSSL) as lowercase hex, used for weight fingerprints
// and checkpoint integrity.
#ifndef RETORT_COMMON_SHA256_H_
#define RETORT_COMMON_SHA256_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace retort {

// Incremental hasher. Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(absl::string_view data);
  // Returns the hex digest; the hasher must not be used afterwards.
  std::string HexDigest();

 private:
  void* ctx_;  // EVP_MD_CTX*
};

std::string Sha256Hex(absl::string_view data);

// The hex sha256 of a file's bytes, read in chunks. NOT_FOUND (naming the
// file) when it cannot be opened.
absl::StatusOr<std::string> FileSha256Hex(const std::string& path);

}  // namespace retort

#endif  // RETORT_COMMON_SHA256_H_
