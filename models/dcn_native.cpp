// Modulated deformable convolution (DCNv2) sampling for the CPU, on channels-last (NHWC) data.
//
// im2col writes each output pixel's masked bilinear samples as one row of the matmul's left
// operand, ordered (tap, channel); col2im takes such rows' gradient back to the input, the
// offsets and the mask in one pass. The matmuls stay in PyTorch (models/dcn_native.py), which also builds this file.
//
// The input comes padded by two zero pixels on every side, so the four corners of any sample
// are always inside the buffer: a corner outside the image reads a zero, and a sample entirely
// outside is moved to (-2, -2), where all four corners are zeros. Each output row's sampling
// positions are first turned into corner indices and bilinear fractions in one loop the compiler
// vectorises; the per-channel loop then only gathers (or scatters) with them.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <vector>

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
  return geo;
}

// Where each sample of one output row reads: the padded-buffer index of its top-left corner
// (channel 0) and its fractional position (fy, fx) between the corners.
template <typename T>
struct RowSamples {
  std::vector<int64_t> corner;
  std::vector<T> fy, fx;
  std::vector<T> tap_y, tap_x;  // undeformed offsets of each (group, tap) from the output pixel

  explicit RowSamples(const Geometry& geo)
      : corner(geo.out_w * geo.samples_per_pixel()), fy(corner.size()), fx(corner.size()),
        tap_y(geo.samples_per_pixel()), tap_x(geo.samples_per_pixel()) {
    for (int64_t g = 0, j = 0; g < geo.groups; ++g)
      for (int64_t ky = 0; ky < geo.kh; ++ky)
        for (int64_t kx = 0; kx < geo.kw; ++kx, ++j) {
          tap_y[j] = T(ky * geo.dil_h - geo.pad_h);
          tap_x[j] = T(kx * geo.dil_w - geo.pad_w);
        }
  }

  void locate(const Geometry& geo, const T* row_offset, int64_t oy) {
    const int64_t per_pixel = geo.samples_per_pixel();
    const T height = T(geo.height), width = T(geo.width);
    const int64_t row_stride = geo.padded_width() * geo.channels;
    for (int64_t ox = 0; ox < geo.out_w; ++ox) {
      const T y_base = T(oy * geo.stride_h), x_base = T(ox * geo.stride_w);
      const T* pixel_offset = row_offset + ox * per_pixel * 2;
      const int64_t first = ox * per_pixel;
      for (int64_t j = 0; j < per_pixel; ++j) {
        T y = y_base + tap_y[j] + pixel_offset[2 * j];
        T x = x_base + tap_x[j] + pixel_offset[2 * j + 1];
        const bool inside = y > T(-1) && x > T(-1) && y < height && x < width;
        y = inside ? y : T(-kPad);
        x = inside ? x : T(-kPad);
        // y, x >= -2: truncation of y + 2 is its floor.
        const int64_t y0 = static_cast<int64_t>(y + T(kPad)), x0 = static_cast<int64_t>(x + T(kPad));
        fy[first + j] = y + T(kPad) - T(y0);
        fx[first + j] = x + T(kPad) - T(x0);
        corner[first + j] = y0 * row_stride + x0 * geo.channels;
      }
    }
  }
};

template <typename T, int PG>
void im2col_rows(const T* x, const T* offset, const T* mask, T* columns, const Geometry& geo, int64_t batch,
                 int64_t row_begin, int64_t row_end) {
  const int64_t taps = geo.taps(), per_group = PG > 0 ? PG : geo.channels / geo.groups;
  const int64_t per_pixel = geo.samples_per_pixel(), channels = geo.channels;
  const int64_t below = geo.padded_width() * channels;
  const T* image = x + batch * (geo.height + 2 * kPad) * below;
  at::parallel_for(row_begin, row_end, 1, [&](int64_t begin, int64_t end) {
    RowSamples<T> samples(geo);
    for (int64_t oy = begin; oy < end; ++oy) {
      const int64_t first_pixel = (batch * geo.out_h + oy) * geo.out_w;
      samples.locate(geo, offset + first_pixel * per_pixel * 2, oy);
      const T* row_mask = mask + first_pixel * per_pixel;
      for (int64_t ox = 0; ox < geo.out_w; ++ox) {
        T* row = columns + ((oy - row_begin) * geo.out_w + ox) * taps * channels;
        for (int64_t g = 0; g < geo.groups; ++g) {
          for (int64_t k = 0; k < taps; ++k) {
            const int64_t j = ox * per_pixel + g * taps + k;
            const T fy = samples.fy[j], fx = samples.fx[j], m = row_mask[j];
            const T w0 = (T(1) - fy) * (T(1) - fx) * m, w1 = (T(1) - fy) * fx * m;
            const T w2 = fy * (T(1) - fx) * m, w3 = fy * fx * m;
            const T* v0 = image + samples.corner[j] + g * per_group;
            const T* v2 = v0 + below;
            T* out = row + k * channels + g * per_group;
            for (int64_t ch = 0; ch < per_group; ++ch)
              out[ch] = w0 * v0[ch] + w1 * v0[ch + channels] + w2 * v2[ch] + w3 * v2[ch + channels];
          }
        }
      }
    }
  });
}

template <typename T, int PG>
void col2im_image(const T* x, const T* offset, const T* mask, const T* grad_columns, T* grad_x, T* grad_offset,
                  T* grad_mask, const Geometry& geo, int64_t batch) {
  const int64_t taps = geo.taps(), per_group = PG > 0 ? PG : geo.channels / geo.groups;
  const int64_t per_pixel = geo.samples_per_pixel(), channels = geo.channels;
  const int64_t below = geo.padded_width() * channels;
  const int64_t image_size = (geo.height + 2 * kPad) * below;
  const T* image = x + batch * image_size;
  T* grad_image = grad_x + batch * image_size;
  RowSamples<T> samples(geo);
  for (int64_t oy = 0; oy < geo.out_h; ++oy) {
    const int64_t first_pixel = (batch * geo.out_h + oy) * geo.out_w;
    samples.locate(geo, offset + first_pixel * per_pixel * 2, oy);
    const T* row_mask = mask + first_pixel * per_pixel;
    T* row_grad_offset = grad_offset + first_pixel * per_pixel * 2;
    T* row_grad_mask = grad_mask + first_pixel * per_pixel;
    for (int64_t ox = 0; ox < geo.out_w; ++ox) {
      const T* row = grad_columns + (first_pixel + ox) * taps * channels;
      for (int64_t g = 0; g < geo.groups; ++g) {
        for (int64_t k = 0; k < taps; ++k) {
          const int64_t j = ox * per_pixel + g * taps + k;
          const T fy = samples.fy[j], fx = samples.fx[j], m = row_mask[j];
          const T* grad = row + k * channels + g * per_group;
          const T* v0 = image + samples.corner[j] + g * per_group;
          const T* v2 = v0 + below;
          T* g0 = grad_image + samples.corner[j] + g * per_group;
          T* g2 = g0 + below;
          const T w0 = (T(1) - fy) * (T(1) - fx), w1 = (T(1) - fy) * fx, w2 = fy * (T(1) - fx), w3 = fy * fx;
          // Per-corner sums of gradient x value give the mask's and both coordinates' gradients.
          T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          for (int64_t ch = 0; ch < per_group; ++ch) {
            const T gc = grad[ch];
            s0 += gc * v0[ch];
            s1 += gc * v0[ch + channels];
            s2 += gc * v2[ch];
            s3 += gc * v2[ch + channels];
            const T gm = gc * m;
            g0[ch] += gm * w0;
            g0[ch + channels] += gm * w1;
            g2[ch] += gm * w2;
            g2[ch + channels] += gm * w3;
          }
          row_grad_mask[j] = w0 * s0 + w1 * s1 + w2 * s2 + w3 * s3;
          row_grad_offset[2 * j] = m * ((T(1) - fx) * (s2 - s0) + fx * (s3 - s1));
          row_grad_offset[2 * j + 1] = m * ((T(1) - fy) * (s1 - s0) + fy * (s3 - s2));
        }
      }
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

template <typename T, int PG>
struct Im2col {
  template <typename... Args>
  static void run(Args... args) { im2col_rows<T, PG>(args...); }
};

template <typename T, int PG>
struct Col2im {
  template <typename... Args>
  static void run(Args... args) { col2im_image<T, PG>(args...); }
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
    with_group_width<Im2col, scalar_t>(geo.channels / geo.groups, x_padded.data_ptr<scalar_t>(),
                                       offset.data_ptr<scalar_t>(), mask.data_ptr<scalar_t>(),
                                       columns.data_ptr<scalar_t>(), geo, batch, row_begin, row_end);
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

}  // namespace

TORCH_LIBRARY(edvr_dcn, m) {
  m.def("im2col(Tensor x_padded, Tensor offset, Tensor mask, Tensor(a!) columns, int[] conv, int batch, "
        "int row_begin, int row_end) -> ()");
  m.def("col2im(Tensor x_padded, Tensor offset, Tensor mask, Tensor grad_columns, Tensor(a!) grad_x_padded, "
        "Tensor(b!) grad_offset, Tensor(c!) grad_mask, int[] conv) -> ()");
}

TORCH_LIBRARY_IMPL(edvr_dcn, CPU, m) {
  m.impl("im2col", &im2col);
  m.impl("col2im", &col2im);
}
