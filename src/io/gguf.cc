#include "io/gguf.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <sstream>

namespace g4 {

std::optional<DTypeInfo> dtype_info(uint32_t id) {
  switch (DType(id)) {
    case DType::kF32:
      return DTypeInfo{"F32", 1, 4, true};
    case DType::kF16:
      return DTypeInfo{"F16", 1, 2, true};
    case DType::kBF16:
      return DTypeInfo{"BF16", 1, 2, true};
    case DType::kQ4_0:
      return DTypeInfo{"Q4_0", 32, 18, true};
    case DType::kQ4_1:
      return DTypeInfo{"Q4_1", 32, 20, false};
    case DType::kQ5_0:
      return DTypeInfo{"Q5_0", 32, 22, true};
    case DType::kQ5_1:
      return DTypeInfo{"Q5_1", 32, 24, false};
    case DType::kQ8_0:
      return DTypeInfo{"Q8_0", 32, 34, true};
    case DType::kQ8_1:
      return DTypeInfo{"Q8_1", 32, 36, false};
    case DType::kQ2_K:
      return DTypeInfo{"Q2_K", 256, 84, false};
    case DType::kQ3_K:
      return DTypeInfo{"Q3_K", 256, 110, false};
    case DType::kQ4_K:
      return DTypeInfo{"Q4_K", 256, 144, true};
    case DType::kQ5_K:
      return DTypeInfo{"Q5_K", 256, 176, false};
    case DType::kQ6_K:
      return DTypeInfo{"Q6_K", 256, 210, true};
    case DType::kQ8_K:
      return DTypeInfo{"Q8_K", 256, 292, false};
  }
  return std::nullopt;
}

const char* gguf_type_name(GgufType t) {
  static const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  return uint32_t(t) <= 12 ? names[uint32_t(t)] : "invalid";
}

size_t gguf_scalar_size(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32:
      return 4;
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64:
      return 8;
    default:
      return 0;
  }
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kU16:
    case GgufType::kI16:
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kU64:
    case GgufType::kI64:
      return true;
    default:
      return false;
  }
}

static std::string quote(std::string_view s, size_t max = 60) {
  std::string out = "\"";
  for (size_t k = 0; k < s.size() && k < max; ++k) {
    const unsigned char c = static_cast<unsigned char>(s[k]);
    if (c == '\n')
      out += "\\n";
    else if (c == '"')
      out += "\\\"";
    else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else
      out += char(c);
  }
  if (s.size() > max) out += "...";
  return out + "\"";
}

std::string GgufValue::to_string(size_t max_items) const {
  std::ostringstream os;
  switch (type) {
    case GgufType::kString:
      return quote(str);
    case GgufType::kBool:
      return u ? "true" : "false";
    case GgufType::kF32:
    case GgufType::kF64:
      os << f;
      return os.str();
    case GgufType::kArray: {
      os << gguf_type_name(elem_type) << "[" << count << "] [";
      const size_t n = size_t(std::min<uint64_t>(count, max_items));
      for (size_t k = 0; k < n; ++k) {
        if (k) os << ", ";
        if (elem_type == GgufType::kString) {
          os << quote(strings[k], 30);
        } else {
          const size_t es = gguf_scalar_size(elem_type);
          const uint8_t* p = elems + k * es;
          switch (elem_type) {
            case GgufType::kU8:
              os << unsigned(p[0]);
              break;
            case GgufType::kI8:
              os << int(int8_t(p[0]));
              break;
            case GgufType::kBool:
              os << (p[0] ? "true" : "false");
              break;
            case GgufType::kU16: {
              uint16_t v;
              std::memcpy(&v, p, 2);
              os << v;
              break;
            }
            case GgufType::kI16: {
              int16_t v;
              std::memcpy(&v, p, 2);
              os << v;
              break;
            }
            case GgufType::kU32: {
              uint32_t v;
              std::memcpy(&v, p, 4);
              os << v;
              break;
            }
            case GgufType::kI32: {
              int32_t v;
              std::memcpy(&v, p, 4);
              os << v;
              break;
            }
            case GgufType::kF32: {
              float v;
              std::memcpy(&v, p, 4);
              os << v;
              break;
            }
            case GgufType::kU64: {
              uint64_t v;
              std::memcpy(&v, p, 8);
              os << v;
              break;
            }
            case GgufType::kI64: {
              int64_t v;
              std::memcpy(&v, p, 8);
              os << v;
              break;
            }
            case GgufType::kF64: {
              double v;
              std::memcpy(&v, p, 8);
              os << v;
              break;
            }
            default:
              os << "?";
          }
        }
      }
      if (count > n) os << ", ...";
      os << "]";
      return os.str();
    }
    default:
      if (type == GgufType::kI8 || type == GgufType::kI16 || type == GgufType::kI32 ||
          type == GgufType::kI64) {
        os << i;
      } else {
        os << u;
      }
      return os.str();
  }
}

std::string GgufTensor::shape_string() const {
  std::string s = "{";
  for (int d = 0; d < n_dims; ++d) s += (d ? ", " : "") + std::to_string(ne[size_t(d)]);
  return s + "}";
}

namespace {

constexpr uint64_t kMaxStringLen = uint64_t(1) << 30;
constexpr uint64_t kMaxArrayLen = uint64_t(1) << 30;

// Bounds-checked little-endian cursor. The first failure is sticky and carries its offset.
class Cursor {
 public:
  Cursor(const uint8_t* base, size_t size) : base_(base), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  bool failed() const { return !err_.empty(); }
  const std::string& error() const { return err_; }

  void fail(const std::string& what) {
    if (err_.empty()) err_ = what + " (at byte offset " + std::to_string(pos_) + ")";
  }
  bool need(size_t n, const char* what) {
    if (failed()) return false;
    if (n > remaining()) {
      fail(std::string("file truncated while reading ") + what + ": need " + std::to_string(n) +
           " bytes, " + std::to_string(remaining()) + " left");
      return false;
    }
    return true;
  }
  template <typename T>
  T read(const char* what) {
    T v{};
    if (!need(sizeof(T), what)) return v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view read_string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    if (failed()) return {};
    if (n > kMaxStringLen) {
      fail(std::string(what) + ": string length " + std::to_string(n) + " is implausible");
      return {};
    }
    if (!need(size_t(n), what)) return {};
    std::string_view s(reinterpret_cast<const char*>(base_ + pos_), size_t(n));
    pos_ += size_t(n);
    return s;
  }
  const uint8_t* skip(size_t n, const char* what) {
    if (!need(n, what)) return nullptr;
    const uint8_t* p = base_ + pos_;
    pos_ += n;
    return p;
  }

 private:
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
  std::string err_;
};

bool read_value(Cursor& c, GgufType type, GgufValue& v, const std::string& key, int depth) {
  v.type = type;
  const std::string what = "value of '" + key + "'";
  switch (type) {
    case GgufType::kU8:
      v.u = c.read<uint8_t>(what.c_str());
      v.i = int64_t(v.u);
      v.f = double(v.u);
      break;
    case GgufType::kI8:
      v.i = c.read<int8_t>(what.c_str());
      v.u = uint64_t(v.i);
      v.f = double(v.i);
      break;
    case GgufType::kU16:
      v.u = c.read<uint16_t>(what.c_str());
      v.i = int64_t(v.u);
      v.f = double(v.u);
      break;
    case GgufType::kI16:
      v.i = c.read<int16_t>(what.c_str());
      v.u = uint64_t(v.i);
      v.f = double(v.i);
      break;
    case GgufType::kU32:
      v.u = c.read<uint32_t>(what.c_str());
      v.i = int64_t(v.u);
      v.f = double(v.u);
      break;
    case GgufType::kI32:
      v.i = c.read<int32_t>(what.c_str());
      v.u = uint64_t(v.i);
      v.f = double(v.i);
      break;
    case GgufType::kU64:
      v.u = c.read<uint64_t>(what.c_str());
      v.i = int64_t(v.u);
      v.f = double(v.u);
      break;
    case GgufType::kI64:
      v.i = c.read<int64_t>(what.c_str());
      v.u = uint64_t(v.i);
      v.f = double(v.i);
      break;
    case GgufType::kF32:
      v.f = c.read<float>(what.c_str());
      break;
    case GgufType::kF64:
      v.f = c.read<double>(what.c_str());
      break;
    case GgufType::kBool: {
      const uint8_t b = c.read<uint8_t>(what.c_str());
      if (!c.failed() && b > 1) {
        c.fail("'" + key + "': bool byte is " + std::to_string(b) + ", expected 0 or 1");
        return false;
      }
      v.u = b;
      break;
    }
    case GgufType::kString:
      v.str = c.read_string(what.c_str());
      break;
    case GgufType::kArray: {
      const uint32_t et = c.read<uint32_t>(what.c_str());
      const uint64_t n = c.read<uint64_t>(what.c_str());
      if (c.failed()) return false;
      if (et > 12) {
        c.fail("'" + key + "': invalid array element type " + std::to_string(et));
        return false;
      }
      if (n > kMaxArrayLen) {
        c.fail("'" + key + "': array length " + std::to_string(n) + " is implausible");
        return false;
      }
      v.elem_type = GgufType(et);
      v.count = n;
      if (v.elem_type == GgufType::kString) {
        if (n * 8 > c.remaining()) {
          c.fail("'" + key + "': array of " + std::to_string(n) + " strings exceeds the file");
          return false;
        }
        v.strings.reserve(size_t(n));
        for (uint64_t k = 0; k < n && !c.failed(); ++k)
          v.strings.push_back(c.read_string(what.c_str()));
      } else if (v.elem_type == GgufType::kArray) {
        // Legal in the spec, used by no Gemma key: parse to skip past it, keep nothing.
        if (depth > 4) {
          c.fail("'" + key + "': arrays nested too deeply");
          return false;
        }
        for (uint64_t k = 0; k < n && !c.failed(); ++k) {
          GgufValue inner;
          if (!read_value(c, GgufType::kArray, inner, key, depth + 1)) return false;
        }
      } else {
        const size_t es = gguf_scalar_size(v.elem_type);
        if (n > c.remaining() / es) {
          c.fail("'" + key + "': array of " + std::to_string(n) + " elements exceeds the file");
          return false;
        }
        v.elems = c.skip(size_t(n) * es, what.c_str());
        if (v.elem_type == GgufType::kBool && v.elems != nullptr) {
          for (uint64_t k = 0; k < n; ++k) {
            if (v.elems[k] > 1) {
              c.fail("'" + key + "': bool array element is not 0 or 1");
              return false;
            }
          }
        }
      }
      break;
    }
    default:
      c.fail("'" + key + "': invalid value type " + std::to_string(uint32_t(type)));
      return false;
  }
  return !c.failed();
}

}  // namespace

Result<std::unique_ptr<GgufFile>> GgufFile::open(const std::string& path) {
  auto m = MmapFile::open(path);
  if (!m.ok()) return m.status();
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->map_ = std::move(m).value();
  f->base_ = f->map_->data();
  f->size_ = f->map_->size();
  f->label_ = path;
  Status s = f->parse_impl();
  if (!s.ok()) return Status::error(path + ": " + s.message());
  return f;
}

Result<std::unique_ptr<GgufFile>> GgufFile::parse(const uint8_t* data, size_t size,
                                                  std::string label) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->base_ = data;
  f->size_ = size;
  f->label_ = std::move(label);
  Status s = f->parse_impl();
  if (!s.ok()) return Status::error(f->label_ + ": " + s.message());
  return f;
}

Result<std::unique_ptr<GgufFile>> GgufFile::parse_owned(std::shared_ptr<const uint8_t[]> data,
                                                        size_t size, std::string label) {
  auto f = parse(data.get(), size, std::move(label));
  if (f.ok()) f.value()->owned_ = std::move(data);
  return f;
}

Status GgufFile::parse_impl() {
  Cursor c(base_, size_);
  if (size_ < 24) return Status::error("not a GGUF file: only " + std::to_string(size_) + " bytes");
  if (std::memcmp(base_, "GGUF", 4) != 0) return Status::error("not a GGUF file: bad magic");
  c.skip(4, "magic");
  version_ = c.read<uint32_t>("version");
  if ((version_ & 0xffff) == 0) {
    return Status::error("GGUF version field " + std::to_string(version_) +
                         " looks byte-swapped: big-endian files are not supported");
  }
  if (version_ == 1) return Status::error("GGUF version 1 is no longer supported");
  if (version_ != 2 && version_ != 3) {
    return Status::error("unsupported GGUF version " + std::to_string(version_));
  }
  const int64_t n_tensors = c.read<int64_t>("tensor count");
  const int64_t n_kv = c.read<int64_t>("metadata count");
  if (n_tensors < 0 || uint64_t(n_tensors) > c.remaining() / 24) {
    return Status::error("tensor count " + std::to_string(n_tensors) + " is implausible for a " +
                         std::to_string(size_) + "-byte file");
  }
  if (n_kv < 0 || uint64_t(n_kv) > c.remaining() / 13) {
    return Status::error("metadata count " + std::to_string(n_kv) + " is implausible for a " +
                         std::to_string(size_) + "-byte file");
  }

  kv_.reserve(size_t(n_kv));
  for (int64_t k = 0; k < n_kv; ++k) {
    const std::string_view key = c.read_string("metadata key");
    if (c.failed()) return Status::error(c.error());
    if (key.empty()) return Status::error("metadata key " + std::to_string(k) + " is empty");
    std::string skey(key);
    if (kv_index_.count(skey)) return Status::error("duplicate metadata key '" + skey + "'");
    const uint32_t t = c.read<uint32_t>("metadata value type");
    if (c.failed()) return Status::error(c.error());
    if (t > 12) {
      return Status::error("metadata '" + skey + "' has invalid value type " + std::to_string(t));
    }
    GgufValue v;
    if (!read_value(c, GgufType(t), v, skey, 0)) return Status::error(c.error());
    kv_index_[skey] = kv_.size();
    kv_.emplace_back(std::move(skey), std::move(v));
  }

  if (const GgufValue* a = find("general.alignment")) {
    if (a->type != GgufType::kU32) {
      return Status::error(std::string("general.alignment must be u32, found ") +
                           gguf_type_name(a->type));
    }
    if (a->u == 0 || (a->u & (a->u - 1)) != 0) {
      return Status::error("general.alignment " + std::to_string(a->u) + " is not a power of two");
    }
    alignment_ = uint32_t(a->u);
  }

  tensors_.reserve(size_t(n_tensors));
  for (int64_t k = 0; k < n_tensors; ++k) {
    GgufTensor t;
    const std::string_view name = c.read_string("tensor name");
    if (c.failed()) return Status::error(c.error());
    t.name = std::string(name);
    const std::string where = "tensor '" + t.name + "'";
    if (name.empty() || name.size() > 63) {
      return Status::error("tensor " + std::to_string(k) + " name length " +
                           std::to_string(name.size()) + " is outside 1..63");
    }
    if (tensor_index_.count(t.name)) return Status::error("duplicate " + where);
    const uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
    if (c.failed()) return Status::error(c.error());
    if (n_dims == 0 || n_dims > 4) {
      return Status::error(where + " has " + std::to_string(n_dims) + " dimensions (1..4 allowed)");
    }
    t.n_dims = int(n_dims);
    int64_t n_el = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const int64_t ne = c.read<int64_t>("tensor dimension");
      if (c.failed()) return Status::error(c.error());
      if (ne <= 0) return Status::error(where + " has dimension " + std::to_string(ne));
      if (n_el > std::numeric_limits<int64_t>::max() / ne) {
        return Status::error(where + " element count overflows");
      }
      n_el *= ne;
      t.ne[d] = ne;
    }
    const uint32_t type_id = c.read<uint32_t>("tensor type");
    t.offset = c.read<uint64_t>("tensor offset");
    if (c.failed()) return Status::error(c.error());
    const auto ti = dtype_info(type_id);
    if (!ti) return Status::error(where + " has unknown type id " + std::to_string(type_id));
    t.type = DType(type_id);
    if (t.ne[0] % ti->block != 0) {
      return Status::error(where + " row of " + std::to_string(t.ne[0]) +
                           " elements is not a multiple of the " + ti->name + " block size " +
                           std::to_string(ti->block));
    }
    const uint64_t row = uint64_t(t.ne[0] / ti->block) * uint64_t(ti->block_bytes);
    const uint64_t rows = uint64_t(n_el / t.ne[0]);
    if (rows != 0 && row > std::numeric_limits<uint64_t>::max() / rows) {
      return Status::error(where + " byte size overflows");
    }
    t.nbytes = row * rows;
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  // Data section starts at the next alignment boundary after the tensor infos.
  uint64_t pos = c.pos();
  if (!tensors_.empty()) pos = (pos + alignment_ - 1) / alignment_ * alignment_;
  data_offset_ = pos;
  if (!tensors_.empty() && data_offset_ > size_) {
    return Status::error("file truncated: tensor data would start at byte " +
                         std::to_string(data_offset_) + " of a " + std::to_string(size_) +
                         "-byte file");
  }
  uint64_t expect = 0;
  for (auto& t : tensors_) {
    if (t.offset % alignment_ != 0) {
      return Status::error("tensor '" + t.name + "' offset " + std::to_string(t.offset) +
                           " is not a multiple of the alignment " + std::to_string(alignment_));
    }
    if (t.offset != expect) {
      return Status::error("tensor '" + t.name + "' offset " + std::to_string(t.offset) +
                           " does not follow the previous tensor (expected " +
                           std::to_string(expect) + ")");
    }
    if (t.nbytes > size_ || t.offset > size_ - t.nbytes ||
        data_offset_ > size_ - t.offset - t.nbytes) {
      return Status::error("file truncated: tensor '" + t.name + "' (" + std::to_string(t.nbytes) +
                           " bytes at data offset " + std::to_string(t.offset) +
                           ") extends past the end of the " + std::to_string(size_) + "-byte file");
    }
    t.data = base_ + data_offset_ + t.offset;
    expect = t.offset + (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
  }
  return Status();
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufTensor* GgufFile::tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Result<std::optional<uint64_t>> GgufFile::get_uint(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::optional<uint64_t>();
  if (!v->is_integer() || (v->i < 0 && v->type != GgufType::kU64)) {
    return Status::error("metadata '" + std::string(key) +
                         "' should be a non-negative integer, found " + gguf_type_name(v->type));
  }
  return std::optional<uint64_t>(v->u);
}

Result<std::optional<double>> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::optional<double>();
  if (!v->is_float() && !v->is_integer()) {
    return Status::error("metadata '" + std::string(key) + "' should be a number, found " +
                         gguf_type_name(v->type));
  }
  return std::optional<double>(v->is_float() ? v->f : double(v->i));
}

Result<std::optional<std::string>> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::optional<std::string>();
  if (v->type != GgufType::kString) {
    return Status::error("metadata '" + std::string(key) + "' should be a string, found " +
                         gguf_type_name(v->type));
  }
  return std::optional<std::string>(std::string(v->str));
}

Result<std::optional<bool>> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::optional<bool>();
  if (v->type != GgufType::kBool) {
    return Status::error("metadata '" + std::string(key) + "' should be a bool, found " +
                         gguf_type_name(v->type));
  }
  return std::optional<bool>(v->u != 0);
}

void GgufFile::release_pages(const void* p, size_t n) const {
  if (map_ == nullptr || n == 0) return;
  const auto page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t lo = (uintptr_t(p) + page - 1) / page * page;
  const uintptr_t hi = (uintptr_t(p) + n) / page * page;
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

}  // namespace g4
