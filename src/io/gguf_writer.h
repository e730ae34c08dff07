// GGUF v3 writer (little-endian), the counterpart of gguf.h. Metadata and tensor infos are
// collected first; then begin() writes the header, and tensor data is streamed in info
// order through write() (each tensor padded to the alignment, as llama.cpp's reader
// requires: offsets are the running sum of padded sizes). The file appears under its final
// name only when finish() succeeds; until then it is written to "<path>.tmp" and removed on
// failure or destruction. ref: formats.md §1.
#pragma once
#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "io/gguf.h"

namespace g4 {

class GgufWriter {
 public:
  GgufWriter() = default;
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Metadata in insertion order; setting an existing key replaces its value in place.
  // copy_kv copies a value read by GgufFile (nested arrays are not supported: error).
  Status copy_kv(const std::string& key, const GgufValue& v);
  void set_u32(const std::string& key, uint32_t v);
  void set_string(const std::string& key, const std::string& v);
  bool has_kv(const std::string& key) const;

  // Tensor infos, in data order. ne in ggml order; ne[0] must be a multiple of the block.
  Status add_tensor(const std::string& name, int n_dims, const std::array<int64_t, 4>& ne,
                    DType type);
  size_t n_tensors() const { return tensors_.size(); }
  uint64_t tensor_nbytes(size_t i) const { return tensors_[i].nbytes; }
  // Total size the finished file will have.
  uint64_t file_size() const;

  // Alignment from `general.alignment` (u32) if set before begin(), else 32.
  Status begin(const std::string& path);
  // Appends tensor data; may split a tensor over several calls but never spans two.
  Status write(const void* data, size_t n);
  Status finish();

 private:
  struct TensorInfo {
    std::string name;
    int n_dims;
    std::array<int64_t, 4> ne;
    DType type;
    uint64_t offset;
    uint64_t nbytes;
  };
  void put_kv(const std::string& key, std::string bytes);
  Status write_raw(const void* p, size_t n);
  Status pad_to(uint64_t pos);
  Status fail(const std::string& what);
  void discard();

  std::vector<std::pair<std::string, std::string>> kv_;  // key, encoded type + value
  std::vector<TensorInfo> tensors_;
  uint32_t alignment_ = 32;
  std::string path_, tmp_path_;
  std::FILE* f_ = nullptr;
  std::vector<char> buf_;
  uint64_t pos_ = 0;         // bytes written so far
  uint64_t data_start_ = 0;  // file offset of the data blob
  size_t cur_ = 0;           // tensor being written
  uint64_t cur_done_ = 0;    // its bytes written so far
  bool failed_ = false;
};

}  // namespace g4
