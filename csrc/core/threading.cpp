#include "core/threading.h"

#include <string>

#include "core/errors.h"

namespace attnkit {

void set_num_threads(int n) {
  if (n < 1) throw_value_error("set_num_threads", "n", "an integer >= 1", std::to_string(n));
  omp_set_num_threads(n);
}

int get_num_threads() {
  return omp_get_max_threads();
}

}  // namespace attnkit
