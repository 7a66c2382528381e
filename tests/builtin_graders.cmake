# tests/builtin_graders.cmake: test_builtin_graders dlopens build/graders/*.so,
# so building the test builds every built-in grader plugin first.
file(GLOB RFT_BUILTIN_GRADER_SRC CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/graders/builtin/*.c)
foreach(src ${RFT_BUILTIN_GRADER_SRC})
  get_filename_component(g ${src} NAME_WE)
  add_dependencies(test_builtin_graders rftg_${g})
endforeach()
