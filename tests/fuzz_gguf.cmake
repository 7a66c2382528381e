# tests/fuzz_gguf.cmake: libFuzzer targets for the GGUF and safetensors readers
# (tests/fuzz/fuzz_gguf.c, fuzz_safetensors.c), built with a separate clang
# command (-fsanitize=fuzzer,address,undefined) when clang is found, and a
# 5-second run of each from the committed seed corpora as tests.
find_program(RFT_FUZZ_CLANG NAMES clang clang-16 clang-15 clang-14)
if(RFT_FUZZ_CLANG)
  foreach(_ff gguf safetensors)
    set(_ff_out ${PROJECT_BINARY_DIR}/fuzz/fuzz_${_ff})
    set(_ff_src ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_${_ff}.c ${PROJECT_SOURCE_DIR}/trainer/${_ff}.c
        ${PROJECT_SOURCE_DIR}/trainer/quant.c ${PROJECT_SOURCE_DIR}/trainer/util.c)
    add_custom_command(OUTPUT ${_ff_out}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/fuzz
      COMMAND ${RFT_FUZZ_CLANG} -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
              -I${PROJECT_SOURCE_DIR}/trainer ${JANSSON_CFLAGS} ${_ff_src} ${JANSSON_LDFLAGS} -lm -o ${_ff_out}
      DEPENDS ${_ff_src} ${PROJECT_SOURCE_DIR}/trainer/${_ff}.h ${PROJECT_SOURCE_DIR}/trainer/quant.h
      COMMENT "clang libFuzzer: fuzz_${_ff}" VERBATIM)
    add_custom_target(rft_fuzz_${_ff} ALL DEPENDS ${_ff_out})
    # new inputs go to a scratch directory (first argument); the seed corpus is only read
    add_test(NAME fuzz_${_ff}
      COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1
              sh -c "d=$(mktemp -d) && ${_ff_out} -max_total_time=5 -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -print_final_stats=1 \"$d\" ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus_${_ff}; r=$?; rm -rf \"$d\"; exit $r"
      WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
    set_tests_properties(fuzz_${_ff} PROPERTIES TIMEOUT 120)
  endforeach()
endif()
