"""EDVR (Wang et al., CVPRW 2019) with BasicSR's parameter names and shapes.

Each stage is its own module so it can be tested alone:
    frames -> feature extraction (optionally predeblur, optionally hr_in /4) -> pyramid L1, L2, L3
           -> PCD alignment of every frame to the centre frame -> fusion (TSA or 1x1 conv)
           -> optional non-local attention -> reconstruction trunk -> pixel-shuffle upsampling
           -> + centre frame (bilinearly upsampled when scale > 1)

Everything up to the pyramid depends on one frame alone (`EDVR.frame_features`); the rest sees
the whole window (`EDVR.fuse`). `forward` is the two in a row; a caller that slides windows over a
video can run each frame through `frame_features` once and hand the pyramids to `fuse`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import (LRELU_SLOPE, Conv1x1, NonLocalBlock, PixelShuffle, ResidualBlockCA, ResidualBlockNoBN,
                           make_layer, upsample2 as _upsample2)
from models.dcn import DCNv2Pack
from models.predeblur import PredeblurModule

# A window whose level-1 features take at most this many bytes is aligned in one batched pass
# over all its frames (training patches, small tiles): one call per layer instead of one per
# frame. Larger windows align frame by frame, so that only one frame's alignment intermediates
# are alive at a time (full frames of a large tile: there the per-call cost is negligible).
BATCHED_ALIGNMENT_BYTES = 16 << 20


class PCDAlignment(nn.Module):
    """Pyramid, cascading and deformable alignment of one neighbour frame to the reference.

    Args:
        num_feat (int): channels. Default: 64.
        deformable_groups (int): DCN offset groups. Default: 8.
        dcn_backend (str): see `models.dcn.DCNv2Pack`. Default: 'pytorch'.
    """

    def __init__(self, num_feat: int = 64, deformable_groups: int = 8, dcn_backend: str = "pytorch"):
        super().__init__()
        self.offset_conv1 = nn.ModuleDict()
        self.offset_conv2 = nn.ModuleDict()
        self.offset_conv3 = nn.ModuleDict()
        self.dcn_pack = nn.ModuleDict()
        self.feat_conv = nn.ModuleDict()
        for level_idx in (3, 2, 1):
            level = f"l{level_idx}"
            self.offset_conv1[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
            if level_idx == 3:
                self.offset_conv2[level] = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            else:  # also takes the upsampled offset features of the coarser level
                self.offset_conv2[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
                self.offset_conv3[level] = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.dcn_pack[level] = DCNv2Pack(num_feat, num_feat, 3, padding=1,
                                             deformable_groups=deformable_groups, backend=dcn_backend)
            if level_idx < 3:
                self.feat_conv[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.cas_offset_conv1 = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.cas_offset_conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.cas_dcnpack = DCNv2Pack(num_feat, num_feat, 3, padding=1,
                                     deformable_groups=deformable_groups, backend=dcn_backend)
        self.lrelu = nn.LeakyReLU(LRELU_SLOPE, inplace=True)

    def forward(self, nbr_feats: list[torch.Tensor], ref_feats: list[torch.Tensor]) -> torch.Tensor:
        """nbr_feats, ref_feats: [L1 (b, c, h, w), L2 (b, c, h/2, w/2), L3 (b, c, h/4, w/4)].
        Returns the aligned neighbour features, (b, c, h, w)."""
        upsampled_offset = upsampled_feat = None
        for level_idx in (3, 2, 1):
            level = f"l{level_idx}"
            nbr, ref = nbr_feats[level_idx - 1], ref_feats[level_idx - 1]
            offset = self.lrelu(self.offset_conv1[level](torch.cat([nbr, ref], dim=1)))
            if level_idx == 3:
                offset = self.lrelu(self.offset_conv2[level](offset))
            else:
                offset = self.lrelu(self.offset_conv2[level](torch.cat([offset, upsampled_offset], dim=1)))
                offset = self.lrelu(self.offset_conv3[level](offset))
            feat = self.dcn_pack[level](nbr, offset)
            if level_idx < 3:
                feat = self.feat_conv[level](torch.cat([feat, upsampled_feat], dim=1))
            if level_idx > 1:
                feat = self.lrelu(feat)
                # Offsets are in pixels: doubling the resolution doubles them.
                upsampled_offset = _upsample2(offset) * 2
                upsampled_feat = _upsample2(feat)
        offset = torch.cat([feat, ref_feats[0]], dim=1)
        offset = self.lrelu(self.cas_offset_conv2(self.lrelu(self.cas_offset_conv1(offset))))
        return self.lrelu(self.cas_dcnpack(feat, offset))


class TSAFusion(nn.Module):
    """Temporal and spatial attention fusion of the aligned frames.

    Args:
        num_feat (int): channels. Default: 64.
        num_frame (int): frames fused. Default: 5.
        center_frame_idx (int): the reference frame. Default: 2.
    """

    def __init__(self, num_feat: int = 64, num_frame: int = 5, center_frame_idx: int = 2):
        super().__init__()
        self.center_frame_idx = center_frame_idx
        self.temporal_attn1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)  # embeds the reference
        self.temporal_attn2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)  # embeds every frame
        self.feat_fusion = Conv1x1(num_frame * num_feat, num_feat)
        self.max_pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg_pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.spatial_attn1 = Conv1x1(num_frame * num_feat, num_feat)
        self.spatial_attn2 = Conv1x1(num_feat * 2, num_feat)
        self.spatial_attn3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn4 = Conv1x1(num_feat, num_feat)
        self.spatial_attn5 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn_l1 = Conv1x1(num_feat, num_feat)
        self.spatial_attn_l2 = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.spatial_attn_l3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn_add1 = Conv1x1(num_feat, num_feat)
        self.spatial_attn_add2 = Conv1x1(num_feat, num_feat)
        self.lrelu = nn.LeakyReLU(LRELU_SLOPE, inplace=True)

    def forward(self, aligned_feat: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """aligned_feat: (b, t, c, h, w), or the t frames' (b, c, h, w) in a list, h and w multiples
        of 4. Returns (b, c, h, w). From a list the embeddings read each frame's own tensor: a
        frame of the stack is a strided view once the layers run channels_last, which a
        convolution first copies."""
        if isinstance(aligned_feat, (list, tuple)):
            frames, aligned_feat = aligned_feat, torch.stack(aligned_feat, dim=1)
        else:
            frames = aligned_feat.unbind(1)
        b, t, c, h, w = aligned_feat.shape
        embedding_ref = self.temporal_attn1(frames[self.center_frame_idx])
        # Per-pixel similarity of each frame to the reference, as a weight in (0, 1).
        corr_prob = torch.sigmoid(torch.stack([(self.temporal_attn2(frame) * embedding_ref).sum(dim=1)
                                               for frame in frames], dim=1))  # (b, t, h, w)
        # Multiplied with the frames' dims last, so the product keeps aligned_feat's layout and the
        # reshape below stays a view for channels_last features too.
        weighted = (aligned_feat.permute(0, 3, 4, 1, 2) * corr_prob.permute(0, 2, 3, 1).unsqueeze(-1))
        weighted = weighted.permute(0, 3, 4, 1, 2).reshape(b, -1, h, w)

        feat = self.lrelu(self.feat_fusion(weighted))

        attn = self.lrelu(self.spatial_attn1(weighted))
        attn = self.lrelu(self.spatial_attn2(torch.cat([self.max_pool(attn), self.avg_pool(attn)], dim=1)))
        attn_level = self.lrelu(self.spatial_attn_l1(attn))
        attn_level = torch.cat([self.max_pool(attn_level), self.avg_pool(attn_level)], dim=1)
        attn_level = self.lrelu(self.spatial_attn_l2(attn_level))
        attn_level = _upsample2(self.lrelu(self.spatial_attn_l3(attn_level)))
        attn = self.lrelu(self.spatial_attn3(attn)) + attn_level
        attn = self.lrelu(self.spatial_attn4(attn))
        attn = self.spatial_attn5(_upsample2(attn))
        attn_add = self.spatial_attn_add2(self.lrelu(self.spatial_attn_add1(attn)))
        # sigmoid(~0) * 2 ~= 1 at initialisation: the attention starts as a pass-through.
        return feat * torch.sigmoid(attn) * 2 + attn_add


class EDVR(nn.Module):
    """EDVR network. Parameter names and shapes equal BasicSR's `EDVR` for the same arguments.

    Args:
        num_in_ch (int): channels of each input frame. Default: 3.
        num_out_ch (int): channels of the output frame. Default: 3.
        num_feat (int): feature channels. Default: 64.
        num_frame (int): input frames, odd (3, 5, 7, 9). Default: 5.
        deformable_groups (int): DCN offset groups. Default: 8.
        num_extract_block (int): residual blocks in feature extraction. Default: 5.
        num_reconstruct_block (int): residual blocks in reconstruction. Default: 10.
        center_frame_idx (int | None): reference frame; None -> num_frame // 2.
        hr_in (bool): input is high resolution: features are computed at 1/4 size inside. Default: False.
        with_predeblur (bool): use the predeblur module for the first features. Default: False.
        with_tsa (bool): TSA fusion; otherwise a 1x1 conv over all frames. Default: True.
        scale (int | None): output size / input size; None -> 1 with hr_in, else 4.
            Allowed: 1 with hr_in; 1, 2 or 4 without.
        car (bool): the seed's `car` variant: channel attention in the reconstruction blocks. Default: False.
        nonlocal_attn (bool): the seed's `nonlocal` variant: non-local attention after alignment.
            Default: False.
        num_hr_feat (int): channels of the last upsampling stage and `conv_hr` (BasicSR fixes 64). Default: 64.
        dcn_backend (str): 'pytorch' (default, runs anywhere), 'torchvision' or 'auto'.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_frame: int = 5,
                 deformable_groups: int = 8, num_extract_block: int = 5, num_reconstruct_block: int = 10,
                 center_frame_idx: int | None = None, hr_in: bool = False, with_predeblur: bool = False,
                 with_tsa: bool = True, scale: int | None = None, car: bool = False,
                 nonlocal_attn: bool = False, num_hr_feat: int = 64, dcn_backend: str = "pytorch"):
        super().__init__()
        center_frame_idx, scale = self._check_arguments(num_in_ch, num_out_ch, num_feat, num_frame,
                                                        deformable_groups, center_frame_idx, hr_in, scale)
        # The resolved constructor arguments, saved beside the weights in our checkpoints.
        self.config = dict(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat,
                           num_frame=num_frame, deformable_groups=deformable_groups,
                           num_extract_block=num_extract_block, num_reconstruct_block=num_reconstruct_block,
                           center_frame_idx=center_frame_idx, hr_in=hr_in, with_predeblur=with_predeblur,
                           with_tsa=with_tsa, scale=scale, car=car, nonlocal_attn=nonlocal_attn,
                           num_hr_feat=num_hr_feat)
        self.num_frame = num_frame
        self.center_frame_idx = center_frame_idx
        self.hr_in = hr_in
        self.with_predeblur = with_predeblur
        self.with_tsa = with_tsa
        self.scale = scale
        # Features live at 1/4 size with hr_in; each pixel-shuffle stage doubles them.
        self.feature_stride = 4 if hr_in else 1
        self.num_upsample_stages = int(math.log2(scale * self.feature_stride))
        # PCD needs /4 pyramids of the feature map and TSA pools it twice more.
        self.size_multiple = 4 * self.feature_stride
        # Not a parameter: switching it changes speed, never the state dict or (beyond float
        # rounding) the output.
        self.cpu_channels_last = True

        # Submodules are registered in BasicSR's order, so state-dict keys and their order match.
        self._build_feature_pyramid(num_in_ch, num_feat, num_extract_block)
        self._build_alignment_and_fusion(num_feat, num_frame, deformable_groups, nonlocal_attn, dcn_backend)
        self._build_reconstruction(num_feat, num_out_ch, num_reconstruct_block, num_hr_feat, car)

    @staticmethod
    def _check_arguments(num_in_ch: int, num_out_ch: int, num_feat: int, num_frame: int,
                         deformable_groups: int, center_frame_idx: int | None, hr_in: bool,
                         scale: int | None) -> tuple[int, int]:
        """Refuse impossible arguments before any layer is built; returns (center_frame_idx, scale)."""
        if num_frame < 1 or num_frame % 2 == 0:
            raise ValueError(f"num_frame must be odd and positive, got {num_frame}")
        if center_frame_idx is None:
            center_frame_idx = num_frame // 2
        if not 0 <= center_frame_idx < num_frame:
            raise ValueError(f"center_frame_idx {center_frame_idx} outside 0..{num_frame - 1}")
        if scale is None:
            scale = 1 if hr_in else 4
        allowed_scales = (1,) if hr_in else (1, 2, 4)
        if scale not in allowed_scales:
            raise ValueError(f"scale {scale} not supported with hr_in={hr_in}; choose {allowed_scales}")
        if num_in_ch != num_out_ch:
            raise ValueError("num_in_ch must equal num_out_ch: the output is added to the centre frame")
        if num_feat % deformable_groups:
            raise ValueError(f"num_feat {num_feat} is not divisible by deformable_groups {deformable_groups}")
        return center_frame_idx, scale

    def _build_feature_pyramid(self, num_in_ch: int, num_feat: int, num_extract_block: int) -> None:
        """The entry layers (predeblur or conv_first) and the L1/L2/L3 feature pyramid, BasicSR's names."""
        if self.with_predeblur:
            self.predeblur = PredeblurModule(num_in_ch, num_feat, hr_in=self.hr_in)
            self.conv_1x1 = Conv1x1(num_feat, num_feat)
        else:
            self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
            if self.hr_in:  # the original EDVR's strided entry (conv_first_2/3 there)
                self.stride_conv_hr1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
                self.stride_conv_hr2 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.feature_extraction = make_layer(ResidualBlockNoBN, num_extract_block, num_feat=num_feat)
        self.conv_l2_1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_l2_2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_l3_1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_l3_2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def _build_alignment_and_fusion(self, num_feat: int, num_frame: int, deformable_groups: int,
                                    nonlocal_attn: bool, dcn_backend: str) -> None:
        """PCD alignment, the optional non-local attention and the fusion (TSA or a 1x1 conv)."""
        self.pcd_align = PCDAlignment(num_feat, deformable_groups, dcn_backend)
        if nonlocal_attn:
            self.nonlocal_attn = NonLocalBlock(num_feat)
        if self.with_tsa:
            self.fusion = TSAFusion(num_feat, num_frame, self.center_frame_idx)
        else:
            self.fusion = Conv1x1(num_frame * num_feat, num_feat)

    def _build_reconstruction(self, num_feat: int, num_out_ch: int, num_reconstruct_block: int,
                              num_hr_feat: int, car: bool) -> None:
        """The reconstruction trunk and the pixel-shuffle stages that `num_upsample_stages` asks for."""
        block = ResidualBlockCA if car else ResidualBlockNoBN
        self.reconstruction = make_layer(block, num_reconstruct_block, num_feat=num_feat)
        hr_in_ch = num_feat
        if self.num_upsample_stages == 2:
            self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        if self.num_upsample_stages >= 1:
            self.upconv2 = nn.Conv2d(num_feat, num_hr_feat * 4, 3, 1, 1)
            hr_in_ch = num_hr_feat
        self.pixel_shuffle = PixelShuffle(2)
        self.conv_hr = nn.Conv2d(hr_in_ch, num_hr_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_hr_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(LRELU_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, t, c, h, w) float frames in [0, 1], any h and w (padded inside, cropped back).
        Returns (n, c, h * scale, w * scale): the restored centre frame."""
        if x.dim() != 5 or x.shape[1] != self.num_frame or x.shape[2] != self.conv_last.out_channels:
            raise ValueError(f"EDVR expects (n, {self.num_frame}, {self.conv_last.out_channels}, h, w) "
                             f"input, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        out = self._forward_padded(self.pad_to_multiple(x))
        return out[:, :, : h * self.scale, : w * self.scale]

    def pad_to_multiple(self, x: torch.Tensor) -> torch.Tensor:
        """(n, t, c, h, w) -> (n, t, c, h', w'): replicate-padded at the bottom and right to the next
        multiples of `size_multiple` (what `forward` runs on; crop the output back to h, w)."""
        n, t, c, h, w = x.shape
        pad_h = -h % self.size_multiple
        pad_w = -w % self.size_multiple
        if not (pad_h or pad_w):
            return x
        # Replicate padding works for any size (reflect needs pad < size).
        x = F.pad(x.reshape(n, t * c, h, w), (0, pad_w, 0, pad_h), mode="replicate")
        return x.reshape(n, t, c, h + pad_h, w + pad_w)

    def extract_features(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: (n*t, c, h, w). Returns level-1 features (n*t, num_feat, h/stride, w/stride)."""
        if self.with_predeblur:
            return self.conv_1x1(self.predeblur(frames))
        feat = self.lrelu(self.conv_first(frames))
        if self.hr_in:
            feat = self.lrelu(self.stride_conv_hr1(feat))
            feat = self.lrelu(self.stride_conv_hr2(feat))
        return feat

    def _feature_layout(self, frames: torch.Tensor) -> torch.Tensor:
        """frames in the memory layout the layers run fastest in. On the CPU that is channels_last:
        oneDNN's 3x3 convolutions take 1.2-4.4x less time in it, and every layer here (the DCN too)
        keeps the layout it is given. Other devices keep the default layout."""
        if self.cpu_channels_last and frames.device.type == "cpu":
            return frames.contiguous(memory_format=torch.channels_last)
        return frames

    def frame_features(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Everything that depends on one frame alone, so a frame shared by several windows can
        be run through it once. frames: (m, c, h, w), h and w multiples of `size_multiple`.
        Returns the pyramid [L1 (m, num_feat, h', w'), L2 (.., h'/2, w'/2), L3 (.., h'/4, w'/4)],
        h' = h / feature_stride, in the layers' layout."""
        feat_l1 = self.feature_extraction(self.extract_features(self._feature_layout(frames)))
        feat_l2 = self.lrelu(self.conv_l2_2(self.lrelu(self.conv_l2_1(feat_l1))))
        feat_l3 = self.lrelu(self.conv_l3_2(self.lrelu(self.conv_l3_1(feat_l2))))
        return [feat_l1, feat_l2, feat_l3]

    def _forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """`forward` of frames whose size is already a multiple of `size_multiple`."""
        n, t, c, h, w = x.shape
        # Frame-major batch, so that each frame's features over the n windows are one dense block:
        # in channels_last a window-major slice would be strided, and the layers after it (cat,
        # convolutions) would fall back to the slower default layout.
        # Split with chunk, not reshape and index: a reshape gives a one-window slice an arbitrary
        # batch stride, after which torch.cat takes it for the default layout.
        frames = x.transpose(0, 1).reshape(-1, c, h, w)
        pyramid = [feat.chunk(t) for feat in self.frame_features(frames)]
        return self.fuse([[level[frame_idx] for level in pyramid] for frame_idx in range(t)],
                         x[:, self.center_frame_idx])

    def fuse(self, frame_features: list[list[torch.Tensor]], x_center: torch.Tensor) -> torch.Tensor:
        """The part of the network that sees the whole window: alignment, fusion, reconstruction.

        Args:
            frame_features: for each of the `num_frame` frames, its `frame_features` pyramid
                [L1, L2, L3] with a batch dim of n windows.
            x_center: (n, c, h, w) the centre frames, h and w multiples of `size_multiple`.
        Returns:
            (n, c, h * scale, w * scale), the default layout.
        """
        aligned = self._align(frame_features)  # a list: TSA takes it as it is
        if hasattr(self, "nonlocal_attn"):
            aligned = self.nonlocal_attn(torch.stack(aligned, dim=1))  # (n, t, c, h', w')
            if not self.with_tsa:
                aligned = aligned.reshape(aligned.shape[0], -1, *aligned.shape[-2:])
        elif not self.with_tsa:
            # (n, t * c, h', w') directly: the same values as stacking and flattening, in the
            # features' own layout.
            aligned = torch.cat(aligned, dim=1)
        out = self.reconstruction(self.fusion(aligned))
        if self.num_upsample_stages == 2:
            out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.num_upsample_stages >= 1:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        base = x_center if self.scale == 1 else F.interpolate(
            x_center, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return (out + base).contiguous()  # callers get the default layout whatever ran inside

    def _align(self, frame_features: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """Each frame's features aligned to the centre frame's: [(n, c, h', w')] per frame."""
        ref_feats = frame_features[self.center_frame_idx]
        num_frames = len(frame_features)
        level1 = ref_feats[0]
        if num_frames * level1.numel() * level1.element_size() > BATCHED_ALIGNMENT_BYTES:
            return [self.pcd_align(nbr_feats, ref_feats) for nbr_feats in frame_features]
        # Frame-major batch, as the features came: chunk k of the result is frame k's.
        nbr_batch = [torch.cat(level) for level in zip(*frame_features)]
        ref_batch = [torch.cat([level] * num_frames) for level in ref_feats]
        return list(self.pcd_align(nbr_batch, ref_batch).chunk(num_frames))

    def scale_residual(self, strength: float) -> None:
        """Multiply what the network adds to its (upsampled) centre frame by `strength`, in place:
        1 = as trained, 0 = the centre frame alone. Exact, because conv_last is linear and feeds
        only that sum."""
        with torch.no_grad():
            self.conv_last.weight.mul_(strength)
            self.conv_last.bias.mul_(strength)
