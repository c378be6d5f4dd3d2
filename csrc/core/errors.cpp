#include "core/errors.h"

namespace attnkit {

std::string argument_message(const std::string& op, const std::string& argument, const std::string& expected,
                             const std::string& got) {
  return op + ": argument '" + argument + "' expected " + expected + ", got " + got;
}

void throw_value_error(const std::string& op, const std::string& argument, const std::string& expected,
                       const std::string& got) {
  throw ValueError(argument_message(op, argument, expected, got));
}

void throw_type_error(const std::string& op, const std::string& argument, const std::string& expected,
                      const std::string& got) {
  throw TypeError(argument_message(op, argument, expected, got));
}

}  // namespace attnkit
