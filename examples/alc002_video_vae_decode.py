"""Frame-by-frame video VAE decoding: the decoded video grows one frame at a time (ALC002).

Video VAEs decode their latents one latent frame at a time (diffusers' Wan and
Qwen-Image VAEs, SGLang's copies of them: a causal decoder keeps a feature cache
from frame to frame) and join the frames with `torch.cat` inside the loop. Every
iteration allocates the whole video decoded so far and copies it: for n frames,
n allocations and about n^2/2 frames copied instead of n.

Here one decoder step maps a latent frame [batch, 16, 1, h, w] to a video frame
[batch, 3, 1, 8h, 8w]: a 3x3 convolution, nearest upsampling by 8, SiLU and a 3x3
convolution to RGB, with a small causal cache (the previous latent frame's features
are mixed in), all fresh outputs computed inside the loop as the real decoder's are.

The decoder is a call alloc-lint cannot see into, so it cannot prove that each
frame is a fresh tensor nobody writes later, of one dtype and shape: the fix
(collect the frames, one `torch.cat` after the loop) is offered as unsafe only.
"""

import torch
import torch.nn.functional as F

from kernels import launch, randn

CHUNK_PARAM = "num_frames"
SMALL = {"batch": 1, "latent_channels": 4, "hidden": 8, "height": 3, "width": 4, "num_frames": 8}
SWEEP = (16, 64, 256)
EXPECT_SAFE_FIX = False  # the decoder is opaque: only --unsafe-fixes rewrites this loop


def decode_frame(latent, cache, weights):
    """One causal decoder step: the next video frame and the updated cache."""
    return launch("decode", _decode_frame, latent, cache, weights)


def _decode_frame(latent, cache, weights):
    features = F.conv3d(latent, weights["conv_in"], padding=(0, 1, 1))
    if cache is not None:
        features = features + 0.5 * cache
    up = F.interpolate(features, scale_factor=(1, 8, 8), mode="nearest")
    frame = F.conv3d(F.silu(up), weights["conv_out"], padding=(0, 1, 1))
    return frame, features


def decode(z, weights):
    """Decode latents [batch, C, T, h, w] into a video [batch, 3, T, 8h, 8w]."""
    out = None
    cache = None
    for i in range(z.shape[2]):
        frame, cache = decode_frame(z[:, :, i:i + 1], cache, weights)
        out = frame if out is None else torch.cat([out, frame], dim=2)
    return out


def make_inputs(device, seed=0, batch=1, latent_channels=16, hidden=64, height=60, width=104,
                num_frames=21):
    """A 480x832 video's latents (Wan's 8x spatial compression) and the decoder's weights."""
    g = torch.Generator().manual_seed(seed)
    return {
        "z": randn((batch, latent_channels, num_frames, height, width), g, device),
        "weights": {
            "conv_in": randn((hidden, latent_channels, 1, 3, 3), g, device) * latent_channels**-0.5,
            "conv_out": randn((3, hidden, 1, 3, 3), g, device) * hidden**-0.5,
        },
    }


def run_loop(inputs):
    """The call under test; returns the decoded video."""
    return decode(**inputs)


if __name__ == "__main__":
    video = run_loop(make_inputs("cuda" if torch.cuda.is_available() else "cpu", **SMALL))
    print(tuple(video.shape), video.dtype)
