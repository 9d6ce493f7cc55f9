# Turns a kernel file (gpu/src/*.cu) into C++ that runs on the CPU: every `Kernel<<<grid, block, ...>>>(args);`
# becomes `::emu::Launch([=] { Kernel(args); }, grid, block, ...);` (queued on its stream with copies of the
# arguments, as a launch copies them, and later run for each block and thread in turn), kernel parameters passed
# as __grid_constant__ become const references, and emulated_kernel.h (the CUDA keywords and the launch) comes
# first. Usage: cmake -DIN=kernel.cu -DOUT=kernel.cc -P emulate_launches.cmake
file(READ "${IN}" text)
string(REGEX REPLACE "const __grid_constant__ ([A-Za-z0-9_]+) p\\)" "const \\1& p)" text "${text}")
string(REGEX REPLACE "([A-Za-z0-9_]+(<[0-9]+>)?)<<<([^>]*)>>>\\(([^)]*)\\);"
       "::emu::Launch([=] { \\1(\\4); }, \\3);" text "${text}")
string(FIND "${text}" "<<<" left)
if(NOT left EQUAL -1)
  message(FATAL_ERROR "${IN}: a kernel launch the emulation cannot rewrite")
endif()
file(WRITE "${OUT}" "// Generated from ${IN} by tests/gpu/emulation/emulate_launches.cmake: do not edit.\n"
                    "#include \"emulated_kernel.h\"\n${text}")
