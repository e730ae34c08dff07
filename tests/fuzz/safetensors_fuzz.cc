// libFuzzer target: arbitrary bytes through the safetensors header parser. Every tensor the
// parser accepts is read end to end, so an extent it failed to check shows up as an ASan
// report. Seeds: tests/fuzz/corpus_safetensors (scripts/gen_safetensors_seeds.py).
#include <cstddef>
#include <cstdint>

#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = g4::SafetensorsFile::parse(data, size);
  if (!f.ok()) return 0;
  unsigned sum = 0;
  for (const g4::StTensor& t : f.value()->tensors()) {
    for (uint64_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
    (void)t.n_elements();
    (void)t.shape_string();
    (void)f.value()->tensor(t.name);
  }
  volatile unsigned sink = sum;
  (void)sink;
  return 0;
}
