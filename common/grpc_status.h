// The mapping from grpc::Status to absl::Status at the trainer's gRPC
// boundary. Both use the same canonical codes (google.rpc.Code), so the code
// and message carry over. (The server answers per-request errors inside
// DistillResponse, so it needs no reverse mapping.)
#ifndef RETORT_COMMON_GRPC_STATUS_H_
#define RETORT_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace retort {

// `peer` (e.g. "teacher 127.0.0.1:5000"), when given, prefixes the message.
absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view peer = "");

}  // namespace retort

#endif  // RETORT_COMMON_GRPC_STATUS_H_
