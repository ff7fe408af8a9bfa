#include "teacher/request_validation.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace retort::teacher {
namespace {

absl::Status Invalid(uint64_t sequence, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat("request ", sequence, ": ", message));
}

std::string ShapeString(const google::protobuf::RepeatedField<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// Number of elements, or -1 on a negative dimension or overflow.
int64_t Elements(const google::protobuf::RepeatedField<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

}  // namespace

int64_t DTypeSize(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_FLOAT32:
    case v1::DTYPE_INT32:
      return 4;
    case v1::DTYPE_FLOAT16:
    case v1::DTYPE_BFLOAT16:
    case v1::DTYPE_UINT16:
      return 2;
    case v1::DTYPE_INT64:
      return 8;
    case v1::DTYPE_UINT8:
      return 1;
    default:
      return 0;
  }
}

std::string DTypeName(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_FLOAT32:
      return "float32";
    case v1::DTYPE_FLOAT16:
      return "float16";
    case v1::DTYPE_BFLOAT16:
      return "bfloat16";
    case v1::DTYPE_INT32:
      return "int32";
    case v1::DTYPE_INT64:
      return "int64";
    case v1::DTYPE_UINT8:
      return "uint8";
    case v1::DTYPE_UINT16:
      return "uint16";
    default:
      return absl::StrCat("dtype(", static_cast<int>(dtype), ")");
  }
}

absl::Status ValidateWireTensor(const v1::Tensor& tensor, const std::string& what) {
  const int64_t size = DTypeSize(tensor.dtype());
  if (size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has unknown dtype ", DTypeName(tensor.dtype())));
  }
  const int64_t elements = Elements(tensor.shape());
  if (elements < 0 || elements > std::numeric_limits<int64_t>::max() / size) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has an invalid shape ", ShapeString(tensor.shape())));
  }
  if (static_cast<int64_t>(tensor.data().size()) != elements * size) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " holds ", tensor.data().size(), " bytes but its shape ", ShapeString(tensor.shape()),
        " of ", DTypeName(tensor.dtype()), " needs ", elements * size));
  }
  return absl::OkStatus();
}

namespace {

// query_ids: INT32 [rows, sequence_length, m] over token inputs, 1 <= m <=
// max_top_k, every id in the vocabulary.
absl::Status ValidateQueryIds(const v1::DistillRequest& request,
                              const v1::TeacherFingerprint& fingerprint,
                              const v1::ServerLimits& limits) {
  const uint64_t seq = request.sequence();
  const v1::Tensor& q = request.query_ids();
  const v1::Tensor& in = request.inputs();
  if (in.dtype() != v1::DTYPE_INT32) {
    return Invalid(seq, "query_ids are for token models; this teacher takes float inputs");
  }
  if (q.dtype() != v1::DTYPE_INT32) {
    return Invalid(seq, absl::StrCat("query_ids are ", DTypeName(q.dtype()), ", expected int32"));
  }
  const int64_t max_m = std::min<int64_t>(fingerprint.num_classes(), limits.max_top_k());
  if (q.shape_size() != 3 || q.shape(0) != in.shape(0) || q.shape(1) != in.shape(1) ||
      q.shape(2) < 1 || q.shape(2) > max_m) {
    return Invalid(seq,
                   absl::StrCat("query_ids have shape ", ShapeString(q.shape()), ", expected [",
                                in.shape(0), ",", in.shape(1), ",m] with m in [1, ", max_m, "]"));
  }
  absl::Status tensor_ok = ValidateWireTensor(q, "query_ids");
  if (!tensor_ok.ok()) return Invalid(seq, std::string(tensor_ok.message()));
  const int64_t m = q.shape(2), per_row = q.shape(1) * m;
  const int64_t elements = static_cast<int64_t>(q.data().size()) / 4;
  for (int64_t i = 0; i < elements; ++i) {
    int32_t id;
    std::memcpy(&id, q.data().data() + 4 * i, 4);
    if (id < 0 || id >= fingerprint.num_classes()) {
      return Invalid(seq, absl::StrCat("query id ", id, " at row ", i / per_row, " position ",
                                       (i % per_row) / m, " is outside the vocabulary [0, ",
                                       fingerprint.num_classes(), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateDistillRequest(const v1::DistillRequest& request,
                                    const v1::TeacherFingerprint& fingerprint,
                                    const v1::ServerLimits& limits) {
  const uint64_t seq = request.sequence();
  // Temperature.
  const double t = request.temperature();
  if (!std::isfinite(t) || t < limits.min_temperature() || t > limits.max_temperature()) {
    return Invalid(seq, absl::StrCat("temperature ", t, " is not in [", limits.min_temperature(),
                                     ", ", limits.max_temperature(), "]"));
  }
  // Output.
  switch (request.output()) {
    case v1::OUTPUT_DENSE:
      if (request.top_k() != 0) {
        return Invalid(seq, absl::StrCat("top_k is ", request.top_k(),
                                         " but the output is dense; set output=OUTPUT_TOP_K"));
      }
      if (request.samples() != 0) {
        return Invalid(seq, absl::StrCat("samples is ", request.samples(),
                                         " but the output is dense; set output=OUTPUT_SAMPLED"));
      }
      break;
    case v1::OUTPUT_TOP_K: {
      const int64_t max_k = std::min<int64_t>(fingerprint.num_classes(), limits.max_top_k());
      if (request.top_k() < 1 || request.top_k() > max_k) {
        return Invalid(seq, absl::StrCat("top_k ", request.top_k(), " is not in [1, ", max_k, "] (",
                                         fingerprint.num_classes(), " classes)"));
      }
      if (request.samples() != 0) {
        return Invalid(seq, "samples is set but the output is top-k; set output=OUTPUT_SAMPLED");
      }
      break;
    }
    case v1::OUTPUT_SAMPLED:
      if (request.samples() < 1 || request.samples() > 65535 || request.top_k() != 0) {
        return Invalid(seq, absl::StrCat("samples ", request.samples(),
                                         " is not in [1, 65535] (and top_k must be 0)"));
      }
      break;
    default:
      return Invalid(seq, absl::StrCat("output kind ", static_cast<int>(request.output()),
                                       " is not OUTPUT_SAMPLED, OUTPUT_DENSE or OUTPUT_TOP_K"));
  }
  switch (request.value_dtype()) {
    case v1::DTYPE_FLOAT32:
    case v1::DTYPE_FLOAT16:
    case v1::DTYPE_BFLOAT16:
      break;
    default:
      return Invalid(seq, absl::StrCat("value_dtype ", DTypeName(request.value_dtype()),
                                       " is not float32, float16 or bfloat16"));
  }
  // Hidden layers.
  if (absl::Status hidden = ValidateHiddenLayers(
          fingerprint, {request.hidden_layers().begin(), request.hidden_layers().end()});
      !hidden.ok()) {
    return Invalid(seq, std::string(hidden.message()));
  }
  // Inputs: dtype, shape, bytes.
  const v1::Tensor& in = request.inputs();
  if (in.dtype() != fingerprint.input_dtype()) {
    return Invalid(seq, absl::StrCat("inputs are ", DTypeName(in.dtype()), ", this teacher takes ",
                                     DTypeName(fingerprint.input_dtype())));
  }
  const auto& want = fingerprint.input_shape();
  bool shape_ok = in.shape_size() == want.size() + 1;
  for (int i = 0; shape_ok && i < want.size(); ++i) {
    const int64_t got = in.shape(i + 1);
    shape_ok = want[i] == -1 ? (got >= 1 && got <= limits.max_sequence_length()) : got == want[i];
  }
  if (!shape_ok) {
    return Invalid(seq, absl::StrCat("inputs have shape ", ShapeString(in.shape()),
                                     ", expected [rows,", absl::StrJoin(want, ","), "]",
                                     limits.max_sequence_length() > 0
                                         ? absl::StrCat(" with sequences of at most ",
                                                        limits.max_sequence_length(), " tokens")
                                         : ""));
  }
  const int64_t rows = in.shape(0);
  if (rows < 1 || rows > limits.max_rows_per_request()) {
    return Invalid(seq, absl::StrCat("a request of ", rows, " rows is not in [1, ",
                                     limits.max_rows_per_request(), "]"));
  }
  absl::Status tensor_ok = ValidateWireTensor(in, "inputs");
  if (!tensor_ok.ok()) return Invalid(seq, std::string(tensor_ok.message()));
  // Values.
  const int64_t elements = static_cast<int64_t>(in.data().size()) / DTypeSize(in.dtype());
  const int64_t per_row = elements / rows;
  const char* data = in.data().data();
  if (in.dtype() == v1::DTYPE_FLOAT32) {
    for (int64_t i = 0; i < elements; ++i) {
      float v;
      std::memcpy(&v, data + 4 * i, 4);
      if (!std::isfinite(v)) {
        return Invalid(seq, absl::StrCat("input row ", i / per_row, " element ", i % per_row,
                                         " is not finite (", v, ")"));
      }
    }
  } else if (in.dtype() == v1::DTYPE_INT32) {
    for (int64_t i = 0; i < elements; ++i) {
      int32_t id;
      std::memcpy(&id, data + 4 * i, 4);
      if (id < 0 || id >= fingerprint.num_classes()) {
        return Invalid(
            seq, absl::StrCat("token id ", id, " at row ", i / per_row, " position ", i % per_row,
                              " is outside the vocabulary [0, ", fingerprint.num_classes(), ")"));
      }
    }
  }
  if (request.has_query_ids()) return ValidateQueryIds(request, fingerprint, limits);
  return absl::OkStatus();
}

RequestAssembler::RequestAssembler(int64_t max_request_bytes, int max_pending,
                                   int64_t max_query_bytes)
    : max_request_bytes_(max_request_bytes),
      max_pending_(max_pending),
      max_query_bytes_(max_query_bytes) {}

absl::StatusOr<std::optional<v1::DistillRequest>> RequestAssembler::Add(v1::DistillRequest part) {
  const uint64_t seq = part.sequence();
  const uint32_t count = std::max<uint32_t>(part.part_count(), 1);
  // A single-part request is bounded by the transport's message limit and
  // checked row by row in ValidateDistillRequest, whose message says more.
  if (count > 1 && part.query_ids().data().size() > static_cast<size_t>(max_query_bytes_)) {
    pending_.erase(seq);
    return Invalid(seq,
                   absl::StrCat("part ", part.part(), " carries ", part.query_ids().data().size(),
                                " bytes of query ids, more than the ", max_query_bytes_,
                                " a request may hold"));
  }
  if (count > 1 && part.inputs().data().size() > static_cast<size_t>(max_request_bytes_)) {
    pending_.erase(seq);
    return Invalid(seq, absl::StrCat("part ", part.part(), " carries ", part.inputs().data().size(),
                                     " bytes of inputs, more than the ", max_request_bytes_,
                                     " a request may hold"));
  }
  if (part.part() == 0) {
    if (pending_.count(seq) != 0) {
      pending_.erase(seq);
      return Invalid(seq,
                     "part 0 arrived twice; sequence numbers must not be reused while "
                     "a request is in flight");
    }
    if (count == 1) return std::optional<v1::DistillRequest>(std::move(part));
    if (static_cast<int>(pending_.size()) >= max_pending_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "request ", seq, ": more than ", max_pending_, " multi-part requests are incomplete"));
    }
    pending_.emplace(seq, std::move(part));
    return std::optional<v1::DistillRequest>();
  }
  auto it = pending_.find(seq);
  if (it == pending_.end()) {
    return Invalid(seq, absl::StrCat("part ", part.part(), " arrived without part 0"));
  }
  v1::DistillRequest& head = it->second;
  // Parts arrive in order: part i is the i-th after part 0.
  const uint32_t expected = head.part() + 1;
  const uint32_t head_count = head.part_count();
  if (part.part() != expected || part.part() >= head_count) {
    pending_.erase(it);
    return Invalid(seq, absl::StrCat("part ", part.part(), " arrived where part ", expected, " of ",
                                     head_count, " was expected"));
  }
  std::string* data = head.mutable_inputs()->mutable_data();
  if (part.has_query_ids() != head.has_query_ids()) {
    pending_.erase(it);
    return Invalid(seq, absl::StrCat("part ", part.part(),
                                     part.has_query_ids() ? " carries query_ids and part 0 does not"
                                                          : " lacks the query_ids part 0 carries"));
  }
  std::string* query = head.has_query_ids() ? head.mutable_query_ids()->mutable_data() : nullptr;
  const size_t query_bytes = query == nullptr ? 0 : query->size() + part.query_ids().data().size();
  if (static_cast<int64_t>(query_bytes) > max_query_bytes_) {
    pending_.erase(it);
    return Invalid(seq, absl::StrCat("the parts carry more than the ", max_query_bytes_,
                                     " bytes of query ids a request may hold"));
  }
  if (static_cast<int64_t>(data->size() + part.inputs().data().size()) > max_request_bytes_) {
    pending_.erase(it);
    return Invalid(seq, absl::StrCat("the parts carry more than the ", max_request_bytes_,
                                     " bytes of inputs a request may hold"));
  }
  data->append(part.inputs().data());
  if (query != nullptr) query->append(part.query_ids().data());
  head.set_part(part.part());
  if (part.part() + 1 < head.part_count()) return std::optional<v1::DistillRequest>();
  v1::DistillRequest whole = std::move(head);
  pending_.erase(it);
  whole.set_part(0);
  whole.set_part_count(1);
  return std::optional<v1::DistillRequest>(std::move(whole));
}

absl::Status ValidateHiddenLayers(const v1::TeacherFingerprint& fingerprint,
                                  const std::vector<std::string>& names) {
  std::set<std::string> seen;
  for (const std::string& name : names) {
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("hidden layer '", name, "' is asked for twice"));
    }
    bool known = false;
    for (const auto& layer : fingerprint.hidden_layers()) known = known || layer.name() == name;
    if (!known) {
      std::vector<std::string> exposed;
      for (const auto& layer : fingerprint.hidden_layers()) exposed.push_back(layer.name());
      return absl::InvalidArgumentError(
          absl::StrCat("hidden layer '", name, "' is not exposed by this teacher; it exposes: ",
                       exposed.empty() ? "none" : absl::StrJoin(exposed, ", ")));
    }
  }
  return absl::OkStatus();
}

}  // namespace retort::teacher
