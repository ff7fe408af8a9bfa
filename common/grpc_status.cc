#include "common/grpc_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace retort {

absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view peer) {
  if (status.ok()) return absl::OkStatus();
  std::string message = status.error_message();
  if (!peer.empty()) message = absl::StrCat(peer, ": ", message);
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), message);
}

}  // namespace retort
