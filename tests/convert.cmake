# tests/convert.cmake: environment for the model import/export tests. On a
# machine whose cores are busy, OpenMP threads that spin while waiting make the
# CPU forward ~15x slower (measured: 5-token SmolLM2 forward 2.0 s spinning,
# 0.14 s with OMP_WAIT_POLICY=passive), so these tests ask for passive waiting.
if(TEST test_convert_smollm2)
  set_property(TEST test_convert_smollm2 APPEND PROPERTY ENVIRONMENT OMP_WAIT_POLICY=passive)
endif()
if(TEST test_convert)
  set_property(TEST test_convert APPEND PROPERTY ENVIRONMENT OMP_WAIT_POLICY=passive)
endif()
