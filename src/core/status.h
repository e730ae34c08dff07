// Status / Result<T>: errors a user can cause (bad files, bad requests, bad text) travel as
// values, never as aborts. Invariant violations use G4_CHECK (always on).
#pragma once
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace g4 {

class Status {
 public:
  Status() = default;
  static Status error(std::string msg) { return Status(std::move(msg)); }
  bool ok() const { return !failed_; }
  const std::string& message() const { return msg_; }

 private:
  explicit Status(std::string msg) : failed_(true), msg_(std::move(msg)) {}
  bool failed_ = false;
  std::string msg_;
};

template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status s) : v_(std::move(s)) {}     // NOLINT
  bool ok() const { return v_.index() == 0; }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  const std::string& error() const { return std::get<1>(v_).message(); }
  Status status() const { return ok() ? Status() : std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

[[noreturn]] inline void check_failed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "g4: internal check failed: %s at %s:%d\n", expr, file, line);
  std::abort();
}

}  // namespace g4

#define G4_CHECK(cond)                                          \
  do {                                                          \
    if (!(cond)) ::g4::check_failed(#cond, __FILE__, __LINE__); \
  } while (0)
