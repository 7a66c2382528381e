# tests/fuzz_tokenizer.cmake: the tokenizer's libFuzzer target (tests/fuzz/fuzz_tokenizer.c),
# built with clang -fsanitize=fuzzer,address,undefined when clang is found (the project itself
# may be compiled by gcc, so this is a separate clang command over the tokenizer's sources),
# and a 10-second run from the committed seed corpus (tests/fuzz/corpus_tokenizer) as a test.
find_program(RFT_FUZZ_CLANG NAMES clang clang-16 clang-15 clang-14)
if(RFT_FUZZ_CLANG)
  set(_tf_out ${PROJECT_BINARY_DIR}/fuzz/fuzz_tokenizer)
  set(_tf_src ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_tokenizer.c ${PROJECT_SOURCE_DIR}/trainer/tokenizer.c
      ${PROJECT_SOURCE_DIR}/trainer/tokenizer_json.c ${PROJECT_SOURCE_DIR}/trainer/chat_template.c
      ${PROJECT_SOURCE_DIR}/trainer/tokenizer_nfc.c
      ${PROJECT_SOURCE_DIR}/trainer/util.c)
  add_custom_command(OUTPUT ${_tf_out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/fuzz
    COMMAND ${RFT_FUZZ_CLANG} -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
            -DRFT_SOURCE_DIR=\"${PROJECT_SOURCE_DIR}\" -I${PROJECT_SOURCE_DIR}/trainer ${PCRE2_CFLAGS} ${JANSSON_CFLAGS}
            ${_tf_src} ${PCRE2_LDFLAGS} ${JANSSON_LDFLAGS} -lpthread -lm -o ${_tf_out}
    DEPENDS ${_tf_src} ${PROJECT_SOURCE_DIR}/trainer/tokenizer.h ${PROJECT_SOURCE_DIR}/trainer/chat_template.h
    COMMENT "clang libFuzzer: fuzz_tokenizer" VERBATIM)
  add_custom_target(rft_fuzz_tokenizer ALL DEPENDS ${_tf_out})
  # new inputs go to a scratch directory (first argument); the seed corpus is only read
  add_test(NAME fuzz_tokenizer
    COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1
            sh -c "d=$(mktemp -d) && ${_tf_out} -max_total_time=10 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \"$d\" ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus_tokenizer; r=$?; rm -rf \"$d\"; exit $r"
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(fuzz_tokenizer PROPERTIES TIMEOUT 120)
endif()
