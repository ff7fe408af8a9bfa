// Graceful stop on a signal: what schedulers send before they kill.
// Kubernetes, Slurm and torchrun send SIGTERM, then SIGKILL after a grace
// period; Slurm's `--signal=USR1@120` warns earlier with another signal.
// InstallStopSignals turns the first of these signals into a request that
// the training loop polls after every step (TrainingLoopOptions::
// stop_requested): every rank finishes its step, the run checkpoints and the
// command exits with kPreemptedExitCode. A second signal of the same kind
// acts as it would without the handler (terminates at once).
//
// The handlers set one process-wide flag (a signal handler can reach nothing
// else); everything else reads it through StopSignalReceived().
#ifndef RETORT_COMMON_STOP_SIGNAL_H_
#define RETORT_COMMON_STOP_SIGNAL_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace retort {

// The exit code of a run that stopped on a signal after writing a
// checkpoint (EX_TEMPFAIL: try again, e.g. with --resume=auto).
inline constexpr int kPreemptedExitCode = 75;

// Installs the handlers (idempotent per signal).
absl::Status InstallStopSignals(const std::vector<int>& signals);

// The first stop signal received so far, or 0.
int StopSignalReceived();

// "SIGUSR1", "USR1" or "10" → 10; INVALID_ARGUMENT naming the accepted forms
// otherwise. SIGKILL and SIGSTOP cannot be caught and are refused.
absl::StatusOr<int> ParseSignal(absl::string_view name);
std::string SignalName(int signal);

// A run that stopped as asked: ABORTED carrying a marker that the command
// line turns into kPreemptedExitCode.
absl::Status PreemptedError(absl::string_view message);
bool IsPreempted(const absl::Status& status);

}  // namespace retort

#endif  // RETORT_COMMON_STOP_SIGNAL_H_
