#include <gtest/gtest.h>

#include <cstring>

#include "retort/v1/teacher.grpc.pb.h"
#include "retort/v1/teacher.pb.h"
#include "retort/v1/tensor.pb.h"

namespace retort {
namespace {

TEST(ProtoTest, TensorRoundTripsThroughTheWireFormat) {
  v1::Tensor tensor;
  tensor.set_dtype(v1::DTYPE_FLOAT32);
  tensor.add_shape(2);
  tensor.add_shape(3);
  float values[6] = {1, -2, 3.5f, 0, 1e-8f, 7};
  tensor.set_data(std::string(reinterpret_cast<const char*>(values), sizeof(values)));
  std::string wire;
  ASSERT_TRUE(tensor.SerializeToString(&wire));
  v1::Tensor parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  EXPECT_EQ(parsed.dtype(), v1::DTYPE_FLOAT32);
  ASSERT_EQ(parsed.shape_size(), 2);
  EXPECT_EQ(parsed.shape(1), 3);
  ASSERT_EQ(parsed.data().size(), sizeof(values));
  EXPECT_EQ(std::memcmp(parsed.data().data(), values, sizeof(values)), 0);
}

TEST(ProtoTest, FingerprintAndServiceAreGenerated) {
  v1::GetInfoResponse response;
  response.set_protocol_version(1);
  response.mutable_fingerprint()->set_weights_sha256("ab");
  response.mutable_fingerprint()->add_input_shape(28);
  v1::GetInfoResponse copy;
  ASSERT_TRUE(copy.ParseFromString(response.SerializeAsString()));
  EXPECT_EQ(copy.fingerprint().weights_sha256(), "ab");
  EXPECT_STREQ(v1::Teacher::service_full_name(), "retort.v1.Teacher");
}

TEST(ProtoTest, GarbageDoesNotParseAsTensor) {
  v1::Tensor tensor;
  EXPECT_FALSE(tensor.ParseFromString(std::string("\xff\xff\xff\xff\xff", 5)));
}

}  // namespace
}  // namespace retort
