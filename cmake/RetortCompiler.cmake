# Compiler settings shared by every target: warnings, ccache, sanitizers.

find_program(RETORT_CCACHE ccache)
if(RETORT_CCACHE)
  # Sloppiness lets ccache cache translation units that use the shared
  # precompiled header.
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      ${RETORT_CCACHE})
endif()

add_compile_options(-Wall -Wextra -Wno-unused-parameter)
# Every translation unit is compiled with -pthread (abseil's targets add it to
# their users), so the shared precompiled header is valid for all of them.
add_compile_options(-pthread)
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  add_compile_options(-Wthread-safety)
endif()

if(RETORT_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# Adds the torch precompiled header, built once by retort_torch_pch, to a
# target. Every torch-using target shares it, so a one-file change rebuilds in
# seconds.
function(retort_use_torch_pch target)
  target_precompile_headers(${target} REUSE_FROM retort_torch_pch)
endfunction()
