# tests/fuzz_inputs.cmake: libFuzzer target for the run configuration and the
# dataset readers (tests/fuzz/fuzz_inputs.c: trainer/config.c,
# grader_config.c, reward.c, dataset.c through the fixture tokenizer), built
# with a separate clang command (-fsanitize=fuzzer,address,undefined) when
# clang is found, and a 10-second run from the committed seed corpus
# (tests/fuzz/corpus_inputs) as a test. A rejected input must come with one
# line naming the file; the built-in graders' plugins (build/graders) are
# looked up by type, never loaded.
find_program(RFT_FUZZ_CLANG NAMES clang clang-16 clang-15 clang-14)
if(RFT_FUZZ_CLANG)
  set(_fi_out ${PROJECT_BINARY_DIR}/fuzz/fuzz_inputs)
  set(_fi_src ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_inputs.c)
  foreach(_f config grader_config grader_item grader_load reward dataset tokenizer tokenizer_json tokenizer_nfc
             chat_template util)
    list(APPEND _fi_src ${PROJECT_SOURCE_DIR}/trainer/${_f}.c)
  endforeach()
  add_custom_command(OUTPUT ${_fi_out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/fuzz
    COMMAND ${RFT_FUZZ_CLANG} -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
            -DRFT_SOURCE_DIR=\"${PROJECT_SOURCE_DIR}\" -DRFT_BINARY_DIR=\"${PROJECT_BINARY_DIR}\"
            -I${PROJECT_SOURCE_DIR}/trainer -I${PROJECT_SOURCE_DIR}/graders ${YAML_CFLAGS} ${PCRE2_CFLAGS}
            ${JANSSON_CFLAGS} ${_fi_src} ${YAML_LDFLAGS} ${PCRE2_LDFLAGS} ${JANSSON_LDFLAGS} -ldl -lpthread -lm
            -o ${_fi_out}
    DEPENDS ${_fi_src}
    COMMENT "clang libFuzzer: fuzz_inputs" VERBATIM)
  add_custom_target(rft_fuzz_inputs ALL DEPENDS ${_fi_out})
  # new inputs go to a scratch directory (first argument); the seed corpus is only read
  add_test(NAME fuzz_inputs
    COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1
            sh -c "d=$(mktemp -d) && ${_fi_out} -seed=1 -artifact_prefix=$d/ -max_total_time=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -print_final_stats=1 \"$d\" ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus_inputs; r=$?; rm -rf \"$d\"; exit $r"
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(fuzz_inputs PROPERTIES TIMEOUT 120)
endif()
