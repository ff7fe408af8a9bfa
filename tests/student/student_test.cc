#include <gtest/gtest.h>

#include "models/classifier.h"
#include "student/student.h"

namespace retort::student {
namespace {

TEST(MeasureModelTest, CountsParametersAndBytes) {
  models::ModelSpec spec;
  spec.hidden = {64};
  auto model = *models::CreateClassifier(spec, 1);
  ModelSize size = MeasureModel(*model);
  EXPECT_EQ(size.parameters, 784 * 64 + 64 + 64 * 10 + 10);
  EXPECT_EQ(size.parameter_bytes, size.parameters * 4);  // float32, no buffers
}

}  // namespace
}  // namespace retort::student
