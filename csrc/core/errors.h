// Error types of attnkit. The bindings map them onto Python's ValueError,
// TypeError, RuntimeError and MemoryError. Every message names the op, the
// argument, what was expected and what came, so that a user can act on it.
#pragma once

#include <stdexcept>
#include <string>

namespace attnkit {

struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct TypeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct RuntimeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Memory that cannot be had: more than an array may span, or more than the
// system gives. The message says what was asked for and how many bytes.
struct MemoryError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "gelu: argument 'x' expected float32, got int32"
std::string argument_message(const std::string& op, const std::string& argument, const std::string& expected,
                             const std::string& got);

[[noreturn]] void throw_value_error(const std::string& op, const std::string& argument, const std::string& expected,
                                    const std::string& got);
[[noreturn]] void throw_type_error(const std::string& op, const std::string& argument, const std::string& expected,
                                   const std::string& got);

}  // namespace attnkit
