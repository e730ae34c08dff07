// Where the golden tests find the default model: $G4_MODEL, else the `g4 pull` cache
// ($G4_HOME or ~/.cache/g4).
#pragma once
#include <cstdlib>
#include <string>

namespace g4::test {

inline std::string default_model_path() {
  if (const char* m = std::getenv("G4_MODEL"); m && *m) return m;
  const char* home = std::getenv("HOME");
  const char* g4home = std::getenv("G4_HOME");
  const std::string cache =
      g4home && *g4home ? g4home : std::string(home ? home : "/tmp") + "/.cache/g4";
  return cache + "/models/gemma-3-270m-q4_k_m.gguf";
}

}  // namespace g4::test
