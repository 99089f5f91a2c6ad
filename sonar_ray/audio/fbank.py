"""Kaldi-compatible log-mel filterbank in pure torch, batched over clips.

Same semantics and float32 arithmetic as `torchaudio.compliance.kaldi.fbank` (the reference the
BEATs fixtures were made with), which cannot be imported next to CPU torch here. Options that
torchaudio has and BEATs never uses (VTLN warping, htk_compat, raw_energy=False, subtract_mean)
are not implemented.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

WINDOW_TYPES = ("povey", "hanning", "hamming", "rectangular", "blackman")


def _window(window_type: str, size: int, device, dtype, blackman_coeff: float = 0.42) -> torch.Tensor:
    if window_type == "povey":  # Kaldi's "povey": a Hann window raised to 0.85
        return torch.hann_window(size, periodic=False, device=device, dtype=dtype).pow(0.85)
    if window_type == "hanning":
        return torch.hann_window(size, periodic=False, device=device, dtype=dtype)
    if window_type == "hamming":
        return torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46, device=device, dtype=dtype)
    if window_type == "rectangular":
        return torch.ones(size, device=device, dtype=dtype)
    if window_type == "blackman":
        a = 2 * math.pi / (size - 1)
        n = torch.arange(size, device=device, dtype=dtype)
        return blackman_coeff - 0.5 * torch.cos(a * n) + (0.5 - blackman_coeff) * torch.cos(2 * a * n)
    raise ValueError(f"window_type must be one of {WINDOW_TYPES}, got {window_type!r}")


def _mel(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


def mel_banks(num_bins: int, padded_window_size: int, sample_frequency: float,
              low_freq: float, high_freq: float) -> torch.Tensor:
    """Triangular Kaldi mel filters, (num_bins, padded_window_size // 2 + 1), float32.

    Built in float32 in the same order as torchaudio's `get_mel_banks` so the weights match bit for bit.
    """
    num_fft_bins = padded_window_size // 2
    nyquist = 0.5 * sample_frequency
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (num_bins > 3 and 0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ValueError(f"bad mel bank: num_bins={num_bins} (> 3), low_freq={low_freq}, high_freq={high_freq}, "
                         f"nyquist={nyquist}")
    fft_bin_width = sample_frequency / padded_window_size
    mel_low, mel_high = _mel(low_freq), _mel(high_freq)
    mel_delta = (mel_high - mel_low) / (num_bins + 1)
    b = torch.arange(num_bins).unsqueeze(1)                           # (M, 1)
    left = mel_low + b * mel_delta                                    # (M, 1)
    center = mel_low + (b + 1.0) * mel_delta                          # (M, 1)
    right = mel_low + (b + 2.0) * mel_delta                           # (M, 1)
    mel = 1127.0 * (1.0 + fft_bin_width * torch.arange(num_fft_bins) / 700.0).log().unsqueeze(0)  # (1, F)
    up = (mel - left) / (center - left)                               # (M, F)
    down = (right - mel) / (right - center)                           # (M, F)
    banks = torch.max(torch.zeros(1), torch.min(up, down))            # (M, F)
    return F.pad(banks, (0, 1))                                       # (M, F + 1): Nyquist bin gets weight 0


def _frames(x: torch.Tensor, size: int, shift: int, snip_edges: bool) -> torch.Tensor:
    """(B, N) -> (B, T, size) frames, Kaldi framing."""
    n = x.shape[-1]
    if snip_edges:
        return x.unfold(-1, size, shift)                              # T = 1 + (N - size) // shift
    # Kaldi without snip_edges: T = round(N / shift) frames centred on multiples of shift,
    # the signal reflected (first samples reversed on the left, the whole reversed signal on the right).
    num = (n + shift // 2) // shift
    pad = size // 2 - shift // 2
    rev = x.flip(-1)
    if pad > 0:
        x = torch.cat([rev[..., -pad:], x, rev], dim=-1)
    else:
        x = torch.cat([x[..., -pad:], rev], dim=-1)
    return x.unfold(-1, size, shift)[:, :num]


def kaldi_fbank(waveform: torch.Tensor, sample_frequency: float = 16000.0, num_mel_bins: int = 128,
                frame_length: float = 25.0, frame_shift: float = 10.0, dither: float = 0.0,
                preemphasis_coefficient: float = 0.97, remove_dc_offset: bool = True,
                window_type: str = "povey", use_power: bool = True, use_log_fbank: bool = True,
                low_freq: float = 20.0, high_freq: float = 0.0, use_energy: bool = False,
                energy_floor: float = 0.0, round_to_power_of_two: bool = True, snip_edges: bool = True,
                backend: str = "torch") -> torch.Tensor:
    """Log-mel fbank of `waveform` (N,) -> (T, M) or (B, N) -> (B, T, M), as torchaudio's kaldi.fbank.

    Units as torchaudio takes them (BEATs scales [-1, 1] audio by 2**15 first). `use_energy` prepends
    the raw log energy (floored at `energy_floor` when > 0) as column 0. `backend="torchaudio"` calls
    torchaudio itself, clip by clip, for cross-checking.
    """
    if backend == "torchaudio":
        return _torchaudio_fbank(waveform, locals())  # locals() here = exactly the keyword arguments
    if backend != "torch":
        raise ValueError(f"backend must be 'torch' or 'torchaudio', got {backend!r}")
    single = waveform.dim() == 1
    x = waveform.unsqueeze(0) if single else waveform                 # (B, N)
    if x.dim() != 2:
        raise ValueError(f"waveform must be (N,) or (B, N), got shape {tuple(waveform.shape)}")
    size = int(sample_frequency * frame_length * 0.001)
    shift = int(sample_frequency * frame_shift * 0.001)
    padded = 1 << (size - 1).bit_length() if round_to_power_of_two else size
    if not (2 <= size <= x.shape[-1] and shift > 0 and padded % 2 == 0 and 0.0 <= preemphasis_coefficient <= 1.0):
        raise ValueError(f"bad framing: {x.shape[-1]} samples, window {size}, shift {shift}, fft {padded}, "
                         f"preemphasis {preemphasis_coefficient} (need 2 <= window <= samples, even fft size)")
    eps = torch.tensor(torch.finfo(torch.float).eps, device=x.device, dtype=x.dtype)

    frames = _frames(x, size, shift, snip_edges)                      # (B, T, W)
    if dither != 0.0:
        frames = frames + dither * torch.randn_like(frames)
    if remove_dc_offset:
        frames = frames - frames.mean(dim=-1, keepdim=True)           # (B, T, W)
    if use_energy:
        log_energy = torch.max(frames.pow(2).sum(-1), eps).log()      # (B, T)
        if energy_floor > 0.0:
            log_energy = log_energy.clamp_min(math.log(energy_floor))
    if preemphasis_coefficient != 0.0:
        prev = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # first sample replicated
        frames = frames - preemphasis_coefficient * prev              # (B, T, W)
    frames = frames * _window(window_type, size, x.device, x.dtype)   # (B, T, W)
    frames = F.pad(frames, (0, padded - size))                        # (B, T, Wp)

    spectrum = torch.fft.rfft(frames).abs()                           # (B, T, Wp/2 + 1)
    if use_power:
        spectrum = spectrum.pow(2.0)
    banks = mel_banks(num_mel_bins, padded, sample_frequency, low_freq, high_freq).to(x.device, x.dtype)
    mel = torch.matmul(spectrum, banks.T)                             # (B, T, M)
    if use_log_fbank:
        mel = torch.max(mel, eps).log()
    if use_energy:
        mel = torch.cat([log_energy.unsqueeze(-1), mel], dim=-1)      # (B, T, 1 + M)
    return mel[0] if single else mel


def _torchaudio_fbank(waveform: torch.Tensor, args: dict) -> torch.Tensor:
    try:
        from torchaudio.compliance import kaldi
    except Exception as e:  # ImportError, or OSError from a torchaudio built for another torch
        raise RuntimeError(f"kaldi_fbank(backend='torchaudio') needs an importable torchaudio matching this torch "
                           f"({torch.__version__}); import failed with {type(e).__name__}: {e}. "
                           f"Use backend='torch' (same results).") from e
    kwargs = {k: v for k, v in args.items() if k not in ("waveform", "backend")}
    if waveform.dim() == 1:
        return kaldi.fbank(waveform.unsqueeze(0), **kwargs)
    # torchaudio's fbank takes one (channel, time) clip at a time.
    return torch.stack([kaldi.fbank(w.unsqueeze(0), **kwargs) for w in waveform])
