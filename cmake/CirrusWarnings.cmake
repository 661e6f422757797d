# Warnings and sanitizers for every target of the project (not for generated protobuf-c code,
# which gets the same flags minus the ones its generator does not satisfy).
set(CIRRUS_C_WARNINGS -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
    -Wformat=2)
if(CIRRUS_WERROR)
  list(APPEND CIRRUS_C_WARNINGS -Werror)
endif()

if(CIRRUS_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
elseif(CIRRUS_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(CIRRUS_SANITIZE STREQUAL "fuzz")
  # libFuzzer (clang only): every object gets the coverage hooks and ASan+UBSan; only the
  # fuzz_NAME binaries link the fuzzer's main (tests/fuzz/CMakeLists.txt).
  if(NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "CIRRUS_SANITIZE=fuzz needs clang (CC=clang CXX=clang++)")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
elseif(NOT CIRRUS_SANITIZE STREQUAL "")
  message(FATAL_ERROR "CIRRUS_SANITIZE must be '', 'address', 'thread' or 'fuzz'")
endif()

# cirrus_target_warnings(TARGET): our own C sources get the full warning set.
function(cirrus_target_warnings target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:C>:${CIRRUS_C_WARNINGS}>)
endfunction()

# cirrus_component(NAME SOURCES...): the static library of one component.
function(cirrus_component name)
  add_library(${name} STATIC ${ARGN})
  target_include_directories(${name} PUBLIC $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}>)
  cirrus_target_warnings(${name})
endfunction()
