// Turns sampled tokens into the text a client sees: whole UTF-8 characters only, stop strings
// cut out (the output ends before the earliest match), and a tail that could still become a
// stop string held back until it is decided. Shared by Session (CLI) and the server.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace g4 {

class StopTextStream {
 public:
  explicit StopTextStream(std::vector<std::string> stop = {});
  // Adds one token's bytes. Returns the text that became final (may be empty); sets
  // stopped() when a stop string matched (the match and anything after it are dropped).
  std::string push(std::string_view piece);
  // End of generation without a stop: releases held text and incomplete UTF-8.
  std::string finish();
  bool stopped() const { return stopped_; }
  const std::string& text() const { return text_; }  // final text so far (emitted or held)

 private:
  std::vector<std::string> stop_;
  Utf8Stream utf8_;
  std::string text_;
  size_t emitted_ = 0;
  bool stopped_ = false;
};

}  // namespace g4
