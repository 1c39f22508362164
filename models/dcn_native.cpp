// Modulated deformable convolution (DCNv2) sampling for the CPU, on channels-last (NHWC) data.
//
// im2col writes each output pixel's masked bilinear samples as one row of the matmul's left
// operand, ordered (tap, channel); col2im takes such rows' gradient back to the input, the
// offsets and the mask in one pass. The products with the weight run outside, as oneDNN 1x1
// convolutions (models/pointwise.py); models/dcn_native.py builds this file and calls it.
//
// The input comes padded by two zero pixels on every side, so the four corners of any sample
// are always inside the buffer: a corner outside the image reads a zero, and a sample entirely
// outside is moved into that border, where all four corners are zeros. Each output row's
// sampling positions are first turned into corner indices and bilinear weights in one
// branch-free loop the compiler vectorises; the per-channel work then only gathers (or
// scatters) with them, one 16-byte vector of channels at a time where the group width allows.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

// On x86 with GCC or Clang the row loops are also built for AVX2 with FMA and chosen at run time
// (EDVR_DCN_ISA=portable forces the portable build). The helpers are always inlined, so each
// build compiles them for its own instruction set.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define EDVR_DCN_X86 1
#endif
#if defined(__GNUC__)
#define EDVR_INLINE inline __attribute__((always_inline))
#else
#define EDVR_INLINE inline
#endif

namespace {

constexpr int64_t kPad = 2;

struct Geometry {
  int64_t height, width, channels, groups, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, out_h, out_w;
  int64_t taps() const { return kh * kw; }
  int64_t padded_width() const { return width + 2 * kPad; }
  int64_t samples_per_pixel() const { return groups * taps(); }
};

// x_padded: (n, h + 4, w + 4, c); offset: (n, out_h, out_w, groups * taps * 2); conv: kh, kw, stride, pad, dilation.
Geometry geometry(const at::Tensor& x_padded, const at::Tensor& offset, at::IntArrayRef conv) {
  TORCH_CHECK(x_padded.dim() == 4 && offset.dim() == 4, "x and offset must be NHWC 4-d tensors");
  TORCH_CHECK(conv.size() == 8, "conv: kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w");
  Geometry geo{x_padded.size(1) - 2 * kPad, x_padded.size(2) - 2 * kPad, x_padded.size(3), 0, conv[0], conv[1],
               conv[2], conv[3], conv[4], conv[5], conv[6], conv[7], offset.size(1), offset.size(2)};
  geo.groups = offset.size(3) / (2 * geo.taps());
  TORCH_CHECK(geo.groups > 0 && geo.channels % geo.groups == 0, "offset channels do not fit the kernel");
  TORCH_CHECK(x_padded.size(1) * x_padded.size(2) < (int64_t(1) << 31), "image too large for the DCN kernel");
  return geo;
}

// For `count` samples (one output row): the padded-buffer pixel index of each sample's top-left
// corner, its fractional position (fy, fx) between the corners, and its four corners' bilinear
// weights times the mask (top-left, top-right, bottom-left, bottom-right). A free function with
// restrict pointers, so that the loop vectorises.
template <typename T>
EDVR_INLINE void locate_samples(int64_t count, const T* __restrict ty, const T* __restrict tx, const T* __restrict off,
                    const T* __restrict mask, T y_base, T y_last, T x_last, int32_t row_pixels,
                    int32_t* __restrict c, T* __restrict py, T* __restrict px, T* __restrict a0,
                    T* __restrict a1, T* __restrict a2, T* __restrict a3) {
  for (int64_t j = 0; j < count; ++j) {
    T y = y_base + ty[j] + off[2 * j];
    T x = tx[j] + off[2 * j + 1];
    // A sample outside the image (y <= -1 or y >= height, the same for x) is moved into the
    // zero border, where its four corners read zeros and pass no gradient: to at least -2, at
    // most half a pixel past the last row or column. Written as selects so that the loop
    // vectorises; a NaN position goes to -2.
    y = T(-kPad) < y ? y : T(-kPad);
    y = y < y_last ? y : y_last;
    x = T(-kPad) < x ? x : T(-kPad);
    x = x < x_last ? x : x_last;
    // y, x >= -2: truncation of y + 2 is its floor.
    const int32_t y0 = static_cast<int32_t>(y + T(kPad)), x0 = static_cast<int32_t>(x + T(kPad));
    const T dy = y + T(kPad) - T(y0), dx = x + T(kPad) - T(x0);
    const T m = mask[j];
    py[j] = dy;
    px[j] = dx;
    a0[j] = (T(1) - dy) * (T(1) - dx) * m;
    a1[j] = (T(1) - dy) * dx * m;
    a2[j] = dy * (T(1) - dx) * m;
    a3[j] = dy * dx * m;
    c[j] = y0 * row_pixels + x0;
  }
}

// Where the samples of one output row read (see locate_samples), ordered (pixel, group, tap).
template <typename T>
struct RowSamples {
  std::vector<int32_t> corner;
  std::vector<T> w0, w1, w2, w3, fy, fx;
  std::vector<T> tap_y, tap_x;  // undeformed position of each (pixel, group, tap) sample, row-relative

  explicit RowSamples(const Geometry& geo)
      : corner(geo.out_w * geo.samples_per_pixel()), w0(corner.size()), w1(corner.size()), w2(corner.size()),
        w3(corner.size()), fy(corner.size()), fx(corner.size()), tap_y(corner.size()), tap_x(corner.size()) {
    for (int64_t ox = 0, j = 0; ox < geo.out_w; ++ox)
      for (int64_t g = 0; g < geo.groups; ++g)
        for (int64_t ky = 0; ky < geo.kh; ++ky)
          for (int64_t kx = 0; kx < geo.kw; ++kx, ++j) {
            tap_y[j] = T(ky * geo.dil_h - geo.pad_h);
            tap_x[j] = T(ox * geo.stride_w + kx * geo.dil_w - geo.pad_w);
          }
  }

  // mask: the row's modulation scalars, folded into the weights.
  EDVR_INLINE void locate(const Geometry& geo, const T* row_offset, const T* mask, int64_t oy) {
    locate_samples<T>(static_cast<int64_t>(corner.size()), tap_y.data(), tap_x.data(), row_offset, mask,
                      T(oy * geo.stride_h), T(geo.height) + T(0.5), T(geo.width) + T(0.5),
                      static_cast<int32_t>(geo.padded_width()), corner.data(), fy.data(), fx.data(), w0.data(),
                      w1.data(), w2.data(), w3.data());
  }
};

// The vector width (GCC/Clang vector extensions) for a group of PG channels: VB bytes (the
// build's widest) or 16 where the group fills whole vectors of that size, else 0 (scalar loop).
template <typename T, int PG, int VB>
constexpr int vector_bytes() {
  if (PG <= 0) return 0;
  if (PG * sizeof(T) % VB == 0) return VB;
  return PG * sizeof(T) % 16 == 0 ? 16 : 0;
}

// One sample of im2col: out[ch] = the four corners' values (rows v0 and v2, the right-hand
// corners `channels` further on) weighted by w0..w3.
template <typename T, int PG, int VB>
EDVR_INLINE void blend_corners(const T* __restrict v0, const T* __restrict v2, T* __restrict out, int64_t channels,
                          int64_t per_group, T w0, T w1, T w2, T w3) {
#if defined(__GNUC__)
  constexpr int kBytes = vector_bytes<T, PG, VB>(), kLanes = kBytes / sizeof(T);
  if constexpr (kBytes > 0) {
    typedef T Lanes __attribute__((vector_size(kBytes), aligned(sizeof(T))));
    for (int ch = 0; ch < PG; ch += kLanes)
      *reinterpret_cast<Lanes*>(out + ch) = w0 * *reinterpret_cast<const Lanes*>(v0 + ch) +
                                            w1 * *reinterpret_cast<const Lanes*>(v0 + channels + ch) +
                                            w2 * *reinterpret_cast<const Lanes*>(v2 + ch) +
                                            w3 * *reinterpret_cast<const Lanes*>(v2 + channels + ch);
    return;
  }
#endif
  const int64_t width = PG > 0 ? PG : per_group;
  for (int64_t ch = 0; ch < width; ++ch)
    out[ch] = w0 * v0[ch] + w1 * v0[ch + channels] + w2 * v2[ch] + w3 * v2[ch + channels];
}

// im2col of output rows [begin, end) of image `batch` into `columns` (which starts at row_begin).
template <typename T, int PG, int VB>
EDVR_INLINE void im2col_band(const T* x, const T* offset, const T* mask, T* columns, const Geometry& geo,
                             int64_t batch, int64_t row_begin, int64_t begin, int64_t end) {
  const int64_t taps = geo.taps(), per_group = PG > 0 ? PG : geo.channels / geo.groups;
  const int64_t per_pixel = geo.samples_per_pixel(), channels = geo.channels;
  const int64_t below = geo.padded_width() * channels;
  const T* image = x + batch * (geo.height + 2 * kPad) * below;
  RowSamples<T> samples(geo);
  for (int64_t oy = begin; oy < end; ++oy) {
    const int64_t first_pixel = (batch * geo.out_h + oy) * geo.out_w;
    samples.locate(geo, offset + first_pixel * per_pixel * 2, mask + first_pixel * per_pixel, oy);
    for (int64_t ox = 0; ox < geo.out_w; ++ox) {
      T* row = columns + ((oy - row_begin) * geo.out_w + ox) * taps * channels;
      for (int64_t g = 0; g < geo.groups; ++g) {
        for (int64_t k = 0; k < taps; ++k) {
          const int64_t j = ox * per_pixel + g * taps + k;
          const T* v0 = image + static_cast<int64_t>(samples.corner[j]) * channels + g * per_group;
          blend_corners<T, PG, VB>(v0, v0 + below, row + k * channels + g * per_group, channels, per_group,
                                   samples.w0[j], samples.w1[j], samples.w2[j], samples.w3[j]);
        }
      }
    }
  }
}

// sums[k] = the sum of vector s_k's lanes, for k = 0..3. With shuffles (a 4x4 transpose) where
// the compiler has __builtin_shufflevector: a lane-by-lane sum per vector was a fifth of col2im.
template <typename T, int kLanes, typename Lanes>
EDVR_INLINE void add_lanes(Lanes s0, Lanes s1, Lanes s2, Lanes s3, T* __restrict sums) {
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
  if constexpr (kLanes == 8) {  // the two halves first
    typedef T Half __attribute__((vector_size(4 * sizeof(T)), aligned(sizeof(T))));
    const auto fold = [](Lanes v) -> Half {
      return __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
    };
    return add_lanes<T, 4, Half>(fold(s0), fold(s1), fold(s2), fold(s3), sums);
  } else if constexpr (kLanes == 4) {
    // Stored through a type of its own: a deduced Lanes may have lost its unaligned attribute.
    typedef T Unaligned __attribute__((vector_size(4 * sizeof(T)), aligned(sizeof(T))));
    // t01 = [s0 lanes 0+2, s1 lanes 0+2, s0 lanes 1+3, s1 lanes 1+3], t23 the same for s2, s3.
    const Lanes t01 = __builtin_shufflevector(s0, s1, 0, 4, 1, 5) + __builtin_shufflevector(s0, s1, 2, 6, 3, 7);
    const Lanes t23 = __builtin_shufflevector(s2, s3, 0, 4, 1, 5) + __builtin_shufflevector(s2, s3, 2, 6, 3, 7);
    *reinterpret_cast<Unaligned*>(sums) =
        __builtin_shufflevector(t01, t23, 0, 1, 4, 5) + __builtin_shufflevector(t01, t23, 2, 3, 6, 7);
    return;
  } else if constexpr (kLanes == 2) {
    typedef T Unaligned __attribute__((vector_size(2 * sizeof(T)), aligned(sizeof(T))));
    *reinterpret_cast<Unaligned*>(sums) = __builtin_shufflevector(s0, s1, 0, 2) + __builtin_shufflevector(s0, s1, 1, 3);
    *reinterpret_cast<Unaligned*>(sums + 2) =
        __builtin_shufflevector(s2, s3, 0, 2) + __builtin_shufflevector(s2, s3, 1, 3);
    return;
  }
#endif
  T total[4] = {0, 0, 0, 0};
  for (int lane = 0; lane < kLanes; ++lane) {
    total[0] += s0[lane];
    total[1] += s1[lane];
    total[2] += s2[lane];
    total[3] += s3[lane];
  }
  for (int k = 0; k < 4; ++k) sums[k] = total[k];
}

// One sample's share of col2im: its gradient row `grad` goes to the four corners (weights
// w0..w3, mask included) of grad_image, and sums[k] = grad . value of corner k.
template <typename T, int PG, int VB>
EDVR_INLINE void scatter_and_correlate(const T* __restrict grad, const T* __restrict v0, T* __restrict g0,
                                  int64_t channels, int64_t below, int64_t per_group, T w0, T w1, T w2, T w3,
                                  T* __restrict sums) {
  const T* __restrict v2 = v0 + below;
  T* __restrict g2 = g0 + below;
#if defined(__GNUC__)
  constexpr int kBytes = vector_bytes<T, PG, VB>(), kLanes = kBytes / sizeof(T);
  if constexpr (kBytes > 0) {
    typedef T Lanes __attribute__((vector_size(kBytes), aligned(sizeof(T))));
    Lanes s0{}, s1{}, s2{}, s3{};
    for (int ch = 0; ch < PG; ch += kLanes) {
      const Lanes gc = *reinterpret_cast<const Lanes*>(grad + ch);
      s0 += gc * *reinterpret_cast<const Lanes*>(v0 + ch);
      s1 += gc * *reinterpret_cast<const Lanes*>(v0 + channels + ch);
      s2 += gc * *reinterpret_cast<const Lanes*>(v2 + ch);
      s3 += gc * *reinterpret_cast<const Lanes*>(v2 + channels + ch);
      *reinterpret_cast<Lanes*>(g0 + ch) += gc * w0;
      *reinterpret_cast<Lanes*>(g0 + channels + ch) += gc * w1;
      *reinterpret_cast<Lanes*>(g2 + ch) += gc * w2;
      *reinterpret_cast<Lanes*>(g2 + channels + ch) += gc * w3;
    }
    add_lanes<T, kLanes>(s0, s1, s2, s3, sums);
    return;
  }
#endif
  const int64_t width = PG > 0 ? PG : per_group;
  T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int64_t ch = 0; ch < width; ++ch) {
    const T gc = grad[ch];
    s0 += gc * v0[ch];
    s1 += gc * v0[ch + channels];
    s2 += gc * v2[ch];
    s3 += gc * v2[ch + channels];
    g0[ch] += gc * w0;
    g0[ch + channels] += gc * w1;
    g2[ch] += gc * w2;
    g2[ch + channels] += gc * w3;
  }
  sums[0] = s0;
  sums[1] = s1;
  sums[2] = s2;
  sums[3] = s3;
}

template <typename T, int PG, int VB>
EDVR_INLINE void col2im_image(const T* x, const T* offset, const T* mask, const T* grad_columns, T* grad_x, T* grad_offset,
                  T* grad_mask, const Geometry& geo, int64_t batch) {
  const int64_t taps = geo.taps(), per_group = PG > 0 ? PG : geo.channels / geo.groups;
  const int64_t per_pixel = geo.samples_per_pixel(), channels = geo.channels;
  const int64_t below = geo.padded_width() * channels;
  const int64_t image_size = (geo.height + 2 * kPad) * below;
  const T* image = x + batch * image_size;
  T* grad_image = grad_x + batch * image_size;
  RowSamples<T> samples(geo);
  std::vector<T> row_sums(4 * geo.out_w * per_pixel);
  T* sums = row_sums.data();
  for (int64_t oy = 0; oy < geo.out_h; ++oy) {
    const int64_t first_pixel = (batch * geo.out_h + oy) * geo.out_w;
    const T* row_mask = mask + first_pixel * per_pixel;
    samples.locate(geo, offset + first_pixel * per_pixel * 2, row_mask, oy);
    T* row_grad_offset = grad_offset + first_pixel * per_pixel * 2;
    T* row_grad_mask = grad_mask + first_pixel * per_pixel;
    for (int64_t ox = 0; ox < geo.out_w; ++ox) {
      const T* row = grad_columns + (first_pixel + ox) * taps * channels;
      for (int64_t g = 0; g < geo.groups; ++g) {
        for (int64_t k = 0; k < taps; ++k) {
          const int64_t j = ox * per_pixel + g * taps + k;
          const T* grad = row + k * channels + g * per_group;
          const int64_t corner = static_cast<int64_t>(samples.corner[j]) * channels + g * per_group;
          T* g0 = grad_image + corner;
          scatter_and_correlate<T, PG, VB>(grad, image + corner, g0, channels, below, per_group,
                                           samples.w0[j], samples.w1[j], samples.w2[j], samples.w3[j],
                                           sums + 4 * j);
        }
      }
    }
    // The mask's and both coordinates' gradients from the per-corner sums, for the whole row.
    const T* __restrict fy = samples.fy.data();
    const T* __restrict fx = samples.fx.data();
    const int64_t count = geo.out_w * per_pixel;
    for (int64_t j = 0; j < count; ++j) {
      const T s0 = sums[4 * j], s1 = sums[4 * j + 1], s2 = sums[4 * j + 2], s3 = sums[4 * j + 3];
      const T y = fy[j], x = fx[j], m = row_mask[j];
      row_grad_mask[j] = (T(1) - y) * ((T(1) - x) * s0 + x * s1) + y * ((T(1) - x) * s2 + x * s3);
      row_grad_offset[2 * j] = m * ((T(1) - x) * (s2 - s0) + x * (s3 - s1));
      row_grad_offset[2 * j + 1] = m * ((T(1) - y) * (s1 - s0) + y * (s3 - s2));
    }
  }
}

template <template <typename, int> class Kernel, typename T, typename... Args>
void with_group_width(int64_t per_group, Args&&... args) {
  switch (per_group) {  // the usual widths get a channel loop of known length
    case 4: return Kernel<T, 4>::run(args...);
    case 8: return Kernel<T, 8>::run(args...);
    case 16: return Kernel<T, 16>::run(args...);
    default: return Kernel<T, 0>::run(args...);
  }
}

// "avx2" or "portable": the build the row loops run in here.
const char* vector_isa() {
#ifdef EDVR_DCN_X86
  const char* forced = std::getenv("EDVR_DCN_ISA");
  if (forced != nullptr && std::strcmp(forced, "portable") == 0) return "portable";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
#endif
  return "portable";
}

#ifdef EDVR_DCN_X86
// The AVX2+FMA build of a row loop: Loop::in_build and everything below it are always inlined,
// so they are compiled here for AVX2, with 32-byte vectors.
template <class Loop, typename... Args>
__attribute__((target("avx2,fma"))) void run_avx2(Args... args) {
  Loop::template in_build<32>(args...);
}
#endif

// Loop::in_build<vector bytes> in the build this CPU gets: AVX2 with FMA on x86 where the CPU has
// them, else the portable build (16-byte vectors, the compiler's baseline instruction set).
template <class Loop, typename... Args>
void run_in_build(Args... args) {
#ifdef EDVR_DCN_X86
  if (std::strcmp(vector_isa(), "avx2") == 0) return run_avx2<Loop>(args...);
#endif
  Loop::template in_build<16>(args...);
}

template <typename T, int PG>
struct Im2col {
  template <int VB, typename... Args>
  EDVR_INLINE static void in_build(Args... args) { im2col_band<T, PG, VB>(args...); }
  template <typename... Args>
  static void run(Args... args) { run_in_build<Im2col>(args...); }
};

template <typename T, int PG>
struct Col2im {
  template <int VB, typename... Args>
  EDVR_INLINE static void in_build(Args... args) { col2im_image<T, PG, VB>(args...); }
  template <typename... Args>
  static void run(Args... args) { run_in_build<Col2im>(args...); }
};

void check_contiguous(std::initializer_list<at::Tensor> tensors) {
  for (const at::Tensor& t : tensors) TORCH_CHECK(t.is_contiguous(), "the DCN kernel needs contiguous NHWC tensors");
}

// columns: (rows * out_w, taps * channels) for output rows [row_begin, row_end) of image `batch`.
void im2col(const at::Tensor& x_padded, const at::Tensor& offset, const at::Tensor& mask, const at::Tensor& columns,
            at::IntArrayRef conv, int64_t batch, int64_t row_begin, int64_t row_end) {
  const Geometry geo = geometry(x_padded, offset, conv);
  check_contiguous({x_padded, offset, mask, columns});
  TORCH_CHECK(columns.numel() >= (row_end - row_begin) * geo.out_w * geo.channels * geo.taps(), "columns too small");
  AT_DISPATCH_FLOATING_TYPES(x_padded.scalar_type(), "dcn_im2col", [&] {
    at::parallel_for(row_begin, row_end, 1, [&](int64_t begin, int64_t end) {
      with_group_width<Im2col, scalar_t>(geo.channels / geo.groups, x_padded.data_ptr<scalar_t>(),
                                         offset.data_ptr<scalar_t>(), mask.data_ptr<scalar_t>(),
                                         columns.data_ptr<scalar_t>(), geo, batch, row_begin, begin, end);
    });
  });
}

// Gradients of im2col over whole images: grad_x_padded (zeroed, shaped like x_padded) accumulates,
// grad_offset and grad_mask (shaped like offset and mask) are written. Images run in parallel,
// each owning its part of grad_x_padded.
void col2im(const at::Tensor& x_padded, const at::Tensor& offset, const at::Tensor& mask,
            const at::Tensor& grad_columns, const at::Tensor& grad_x_padded, const at::Tensor& grad_offset,
            const at::Tensor& grad_mask, at::IntArrayRef conv) {
  const Geometry geo = geometry(x_padded, offset, conv);
  check_contiguous({x_padded, offset, mask, grad_columns, grad_x_padded, grad_offset, grad_mask});
  AT_DISPATCH_FLOATING_TYPES(x_padded.scalar_type(), "dcn_col2im", [&] {
    at::parallel_for(0, x_padded.size(0), 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        with_group_width<Col2im, scalar_t>(
            geo.channels / geo.groups, x_padded.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(),
            mask.data_ptr<scalar_t>(), grad_columns.data_ptr<scalar_t>(), grad_x_padded.data_ptr<scalar_t>(),
            grad_offset.data_ptr<scalar_t>(), grad_mask.data_ptr<scalar_t>(), geo, b);
    });
  });
}

std::string vector_isa_name() { return vector_isa(); }

}  // namespace

TORCH_LIBRARY(edvr_dcn, m) {
  m.def("vector_isa() -> str", &vector_isa_name);
  m.def("im2col(Tensor x_padded, Tensor offset, Tensor mask, Tensor(a!) columns, int[] conv, int batch, "
        "int row_begin, int row_end) -> ()");
  m.def("col2im(Tensor x_padded, Tensor offset, Tensor mask, Tensor grad_columns, Tensor(a!) grad_x_padded, "
        "Tensor(b!) grad_offset, Tensor(c!) grad_mask, int[] conv) -> ()");
}

TORCH_LIBRARY_IMPL(edvr_dcn, CPU, m) {
  m.impl("im2col", &im2col);
  m.impl("col2im", &col2im);
}
