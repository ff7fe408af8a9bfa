// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and
// released), for starting local servers and rendezvous stores.
#ifndef RETORT_COMMON_FREE_PORT_H_
#define RETORT_COMMON_FREE_PORT_H_

#include "absl/status/statusor.h"

namespace retort {

absl::StatusOr<int> FreeLoopbackPort();

}  // namespace retort

#endif  // RETORT_COMMON_FREE_PORT_H_
