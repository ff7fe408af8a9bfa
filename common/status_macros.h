// Status propagation macros. Abseil 20220623 (Debian bookworm) ships no
// status macros, so the project defines its own.
//
//   RETORT_RETURN_IF_ERROR(DoThing());
//   RETORT_ASSIGN_OR_RETURN(auto value, ComputeValue());
#ifndef RETORT_COMMON_STATUS_MACROS_H_
#define RETORT_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RETORT_STATUS_CONCAT_INNER_(a, b) a##b
#define RETORT_STATUS_CONCAT_(a, b) RETORT_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing
// function when it is not OK.
#define RETORT_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status retort_status_ = (expr);          \
    if (!retort_status_.ok()) return retort_status_; \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status,
// otherwise move-assigns the value to `lhs` (which may be a declaration).
#define RETORT_ASSIGN_OR_RETURN(lhs, rexpr) \
  RETORT_ASSIGN_OR_RETURN_IMPL_(RETORT_STATUS_CONCAT_(retort_statusor_, __LINE__), lhs, rexpr)

#define RETORT_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#endif  // RETORT_COMMON_STATUS_MACROS_H_
