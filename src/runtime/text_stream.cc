#include "runtime/text_stream.h"

#include <algorithm>

namespace g4 {

StopTextStream::StopTextStream(std::vector<std::string> stop) : stop_(std::move(stop)) {
  stop_.erase(std::remove(stop_.begin(), stop_.end(), std::string()), stop_.end());
}

std::string StopTextStream::push(std::string_view piece) {
  if (stopped_) return {};
  text_ += utf8_.push(piece);
  // Cut at the earliest match of any stop string.
  size_t cut = std::string::npos;
  for (const std::string& st : stop_) cut = std::min(cut, text_.find(st));
  size_t ready = text_.size();
  if (cut != std::string::npos) {
    text_.resize(cut);
    stopped_ = true;
    ready = cut;
  } else {
    // Hold back the longest tail that is a proper prefix of some stop string.
    size_t held = 0;
    for (const std::string& st : stop_) {
      for (size_t k = std::min(st.size() - 1, text_.size()); k > held; --k) {
        if (text_.compare(text_.size() - k, k, st, 0, k) == 0) {
          held = k;
          break;
        }
      }
    }
    ready = text_.size() - held;
  }
  if (ready <= emitted_) return {};
  std::string fresh = text_.substr(emitted_, ready - emitted_);
  emitted_ = ready;
  return fresh;
}

std::string StopTextStream::finish() {
  if (stopped_) return {};
  text_ += utf8_.flush();
  std::string fresh = text_.substr(std::min(emitted_, text_.size()));
  emitted_ = text_.size();
  return fresh;
}

}  // namespace g4
