// TeacherService: the retort.v1.Teacher gRPC service (synchronous API).
//
// Each Distill stream has a reader (the gRPC handler thread) and a writer
// thread. The reader joins request parts, validates each request before
// LibTorch sees it and queues it on the shared DynamicBatcher; the writer
// encodes answers into bounded messages and writes them as they complete. A
// bad request is answered with an error for that sequence number only: the
// stream, and every other stream, carries on.
//
// Thread-safe. The service must outlive the grpc::Server it is registered
// with, and the batcher must outlive the service.
#ifndef RETORT_TEACHER_SERVER_TEACHER_SERVICE_H_
#define RETORT_TEACHER_SERVER_TEACHER_SERVICE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/prometheus_metrics.h"
#include "retort/v1/teacher.grpc.pb.h"
#include "teacher/dynamic_batcher.h"

namespace retort::teacher {

class TeacherService final : public v1::Teacher::Service {
 public:
  struct Options {
    v1::TeacherFingerprint fingerprint;
    v1::ServerLimits limits;
    std::string auth_token;              // empty: none required
    MetricsRegistry* metrics = nullptr;  // must outlive the service
  };

  TeacherService(Options options, DynamicBatcher* batcher);

  grpc::Status GetInfo(grpc::ServerContext* context, const v1::GetInfoRequest* request,
                       v1::GetInfoResponse* response) override;
  grpc::Status Distill(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::DistillResponse, v1::DistillRequest>* stream) override;

  // From now on new streams get UNAVAILABLE and new requests on open streams
  // are answered UNAVAILABLE; requests already accepted are still answered.
  void StartDraining();
  // Waits until no accepted request is unanswered, or `deadline`. True when
  // everything in flight was answered.
  bool WaitForInFlight(absl::Time deadline);

  int64_t in_flight_requests() const;

 private:
  class Stream;
  void CountRequest(absl::StatusCode code);

  const Options options_;
  DynamicBatcher* const batcher_;
  mutable absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  int open_streams_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;

  Gauge* streams_gauge_ = nullptr;
  Gauge* in_flight_gauge_ = nullptr;
  Counter* rows_total_ = nullptr;
  Counter* bytes_out_ = nullptr;
  Histogram* latency_ = nullptr;
  Histogram* request_rows_ = nullptr;
};

}  // namespace retort::teacher

#endif  // RETORT_TEACHER_SERVER_TEACHER_SERVICE_H_
