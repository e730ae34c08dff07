#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace g4 {

namespace {
constexpr uint64_t kMaxHeader = 100u << 20;  // the reference implementation's limit (100 MB)

bool st_dtype(const std::string& s, DType* t, uint64_t* size) {
  if (s == "F32")
    *t = DType::kF32, *size = 4;
  else if (s == "F16")
    *t = DType::kF16, *size = 2;
  else if (s == "BF16")
    *t = DType::kBF16, *size = 2;
  else
    return false;
  return true;
}
}  // namespace

int64_t StTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string StTensor::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  auto m = MmapFile::open(path);
  if (!m.ok()) return m.status();
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->map_ = std::move(m).value();
  f->label_ = path;
  Status s = f->parse_impl(f->map_->data(), f->map_->size());
  if (!s.ok()) return Status::error(path + ": " + s.message());
  return f;
}

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::parse(const uint8_t* data, size_t size,
                                                                std::string label) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->label_ = std::move(label);
  Status s = f->parse_impl(data, size);
  if (!s.ok()) return Status::error(f->label_ + ": " + s.message());
  return f;
}

const StTensor* SafetensorsFile::tensor(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsFile::parse_impl(const uint8_t* data, size_t size) {
  if (size < 8) return Status::error("file of " + std::to_string(size) + " bytes is too short");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > size - 8) {
    return Status::error("header length " + std::to_string(n) + " runs past the end of the " +
                         std::to_string(size) + "-byte file");
  }
  if (n > kMaxHeader) return Status::error("header length " + std::to_string(n) + " too large");
  const std::string_view text(reinterpret_cast<const char*>(data + 8), size_t(n));
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return Status::error("header is not valid JSON");
  if (!j.is_object()) return Status::error("header is not a JSON object");
  const uint8_t* base = data + 8 + n;
  const uint64_t data_size = size - 8 - n;
  std::vector<std::pair<uint64_t, uint64_t>> extents;
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) return Status::error("__metadata__ is not an object");
      for (const auto& [k, mv] : v.items()) {
        if (!mv.is_string()) return Status::error("__metadata__." + k + " is not a string");
        meta_[k] = mv.get<std::string>();
      }
      continue;
    }
    const std::string what = "tensor '" + name + "'";
    if (!v.is_object()) return Status::error(what + " is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string())
      return Status::error(what + ": missing dtype");
    if (!v.contains("shape") || !v["shape"].is_array())
      return Status::error(what + ": missing shape");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2 || !v["data_offsets"][0].is_number_unsigned() ||
        !v["data_offsets"][1].is_number_unsigned()) {
      return Status::error(what + ": data_offsets must be two non-negative integers");
    }
    StTensor t;
    t.name = name;
    uint64_t esize = 0;
    const std::string dt = v["dtype"].get<std::string>();
    if (!st_dtype(dt, &t.type, &esize)) {
      return Status::error(what + " has dtype " + dt +
                           ", which is not supported (F32, F16, BF16 only)");
    }
    if (v["shape"].size() > 8) return Status::error(what + ": more than 8 dimensions");
    uint64_t count = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) return Status::error(what + ": shape entries must be >= 0");
      const uint64_t x = d.get<uint64_t>();
      if (x > uint64_t(std::numeric_limits<int64_t>::max()) ||
          (x != 0 && count > (std::numeric_limits<uint64_t>::max() / 4) / x)) {
        return Status::error(what + ": shape product overflows");
      }
      count *= x;
      t.shape.push_back(int64_t(x));
    }
    const uint64_t b = v["data_offsets"][0].get<uint64_t>(),
                   e = v["data_offsets"][1].get<uint64_t>();
    if (b > e || e > data_size) {
      return Status::error(what + ": data_offsets [" + std::to_string(b) + ", " +
                           std::to_string(e) + ") outside the " + std::to_string(data_size) +
                           "-byte data block");
    }
    if (e - b != count * esize) {
      return Status::error(what + ": " + std::to_string(e - b) + " bytes for shape " +
                           t.shape_string() + " of " + dt + " (expected " +
                           std::to_string(count * esize) + ")");
    }
    t.data = base + b;
    t.nbytes = e - b;
    if (t.nbytes > 0) extents.emplace_back(b, e);
    index_[name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }
  std::sort(extents.begin(), extents.end());
  for (size_t i = 1; i < extents.size(); ++i) {
    if (extents[i].first < extents[i - 1].second) {
      return Status::error("tensor data ranges overlap at byte " +
                           std::to_string(extents[i].first));
    }
  }
  return Status();
}

Result<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::open_dir(
    const std::string& dir) {
  namespace fs = std::filesystem;
  std::unique_ptr<SafetensorsCheckpoint> c(new SafetensorsCheckpoint());
  const fs::path d(dir);
  std::error_code ec;
  std::map<std::string, std::string> where;  // tensor -> shard named by the index
  std::vector<std::string> shards;
  if (fs::exists(d / "model.safetensors.index.json", ec)) {
    std::ifstream in(d / "model.safetensors.index.json");
    std::stringstream ss;
    ss << in.rdbuf();
    const auto j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
        !j["weight_map"].is_object()) {
      return Status::error(dir + "/model.safetensors.index.json: no weight_map object");
    }
    std::set<std::string> seen;
    for (const auto& [name, shard] : j["weight_map"].items()) {
      if (!shard.is_string()) return Status::error("weight_map." + name + " is not a string");
      const std::string s = shard.get<std::string>();
      if (s.empty() || s.find('/') != std::string::npos || s == "." || s == "..") {
        return Status::error("weight_map." + name + ": bad shard name '" + s + "'");
      }
      where[name] = s;
      if (seen.insert(s).second) shards.push_back(s);
    }
  } else if (fs::exists(d / "model.safetensors", ec)) {
    shards.push_back("model.safetensors");
  } else {
    return Status::error(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  for (const std::string& s : shards) {
    auto f = SafetensorsFile::open((d / s).string());
    if (!f.ok()) return f.status();
    for (const StTensor& t : f.value()->tensors()) {
      if (!where.empty()) {
        auto it = where.find(t.name);
        if (it == where.end() || it->second != s) {
          return Status::error(s + ": tensor '" + t.name +
                               "' is not listed for this shard in the index");
        }
      }
      if (!c->index_.emplace(t.name, &t).second) {
        return Status::error(s + ": tensor '" + t.name + "' appears in two shards");
      }
      c->all_.push_back(&t);
    }
    c->files_.push_back(std::move(f).value());
  }
  for (const auto& [name, s] : where) {
    if (!c->index_.count(name)) {
      return Status::error("tensor '" + name + "' listed in the index is missing from " + s);
    }
  }
  return c;
}

const StTensor* SafetensorsCheckpoint::tensor(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

}  // namespace g4
