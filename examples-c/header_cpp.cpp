// The header compiles as C++ and can be included twice.
#include "dgzoo.h"
#include "dgzoo.h"
#include <cstdio>
#include <cstring>

int main() {
  dg_error *e = dg_connect(nullptr, nullptr, nullptr, nullptr);
  bool ok = e != nullptr && dg_error_code(e) == DG_INVALID_ARGUMENT && std::strlen(dg_error_message(e)) > 0;
  dg_error_free(e);
  std::printf("dgzoo %s from C++: %s\n", dg_version(), ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
