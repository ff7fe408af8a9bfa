# Third-party dependencies, all from Debian packages (see tools/install_deps.sh).

find_package(Torch REQUIRED)
find_package(absl REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(ZLIB REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(Threads REQUIRED)

find_program(RETORT_PROTOC protoc REQUIRED)
find_program(RETORT_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

# One object library that owns the precompiled torch header.
file(WRITE ${CMAKE_BINARY_DIR}/retort_torch_pch.cc "// precompiled header host\n")
add_library(retort_torch_pch OBJECT ${CMAKE_BINARY_DIR}/retort_torch_pch.cc)
target_link_libraries(retort_torch_pch PUBLIC torch)
target_precompile_headers(retort_torch_pch PRIVATE
  <torch/torch.h>
  <absl/status/status.h>
  <absl/status/statusor.h>
  <absl/strings/str_cat.h>
  <nlohmann/json.hpp>)
target_link_libraries(retort_torch_pch PUBLIC nlohmann_json::nlohmann_json absl::status absl::statusor absl::strings)

# c10d's reducer.hpp includes a distributed-autograd header that Debian's
# libtorch-dev lacks; a two-type stand-in (cmake/shims) fills in for it.
find_path(RETORT_TORCH_DIST_AUTOGRAD_CONTEXT torch/csrc/distributed/autograd/context/context.h
  PATHS ${TORCH_INCLUDE_DIRS} NO_DEFAULT_PATH)
if(RETORT_TORCH_DIST_AUTOGRAD_CONTEXT)
  set(RETORT_C10D_SHIMS "")
else()
  set(RETORT_C10D_SHIMS ${PROJECT_SOURCE_DIR}/cmake/shims)
endif()
