// Hugging Face safetensors reader (single files and `model.safetensors.index.json` shards).
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__": {...}}, then the data block; offsets are relative
// to the data block. Files are memory-mapped; every header field, offset, extent and shape
// product is checked against the file before use, and tensors may not overlap. Only F32, F16
// and BF16 tensors are accepted (anything else is a clear error naming the tensor).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/mmap_file.h"
#include "core/status.h"
#include "kernels/dtype.h"

namespace g4 {

struct StTensor {
  std::string name;
  DType type = DType::kF32;    // kF32, kF16 or kBF16
  std::vector<int64_t> shape;  // outermost first (PyTorch order); [] = scalar
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  int64_t n_elements() const;
  std::string shape_string() const;
};

class SafetensorsFile {
 public:
  static Result<std::unique_ptr<SafetensorsFile>> open(const std::string& path);
  // Parses an in-memory image (fuzzer, tests); `data` must outlive the object.
  static Result<std::unique_ptr<SafetensorsFile>> parse(const uint8_t* data, size_t size,
                                                        std::string label = "<memory>");
  const std::vector<StTensor>& tensors() const { return tensors_; }
  const StTensor* tensor(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return meta_; }
  const std::string& label() const { return label_; }

 private:
  SafetensorsFile() = default;
  Status parse_impl(const uint8_t* data, size_t size);
  std::unique_ptr<MmapFile> map_;
  std::string label_;
  std::vector<StTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> meta_;
};

// All tensors of a checkpoint directory: `model.safetensors`, or the shards listed by
// `model.safetensors.index.json` (each tensor must be in the shard the index names, and no name
// may appear in two shards).
class SafetensorsCheckpoint {
 public:
  static Result<std::unique_ptr<SafetensorsCheckpoint>> open_dir(const std::string& dir);
  const StTensor* tensor(std::string_view name) const;
  const std::vector<const StTensor*>& tensors() const { return all_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<const StTensor*> all_;
  std::map<std::string, const StTensor*, std::less<>> index_;
};

}  // namespace g4
