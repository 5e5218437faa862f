"""log q(z_i) and log q(z_id) under a mixture of diagonal Gaussians, with a hand-written
backward pass.

The β-TCVAE estimators spend most of a training step here: a (D, B, J) block of log-densities
log N(z_id; mu_jd, exp(logvar_jd)) reduced by two logsumexps over the mixture's J components.
Autograd's backward through that chain makes some twenty passes over the block; this one
makes five (one to form the gradient of the block, one sum over i, one to weigh it by z − mu,
and two batched matrix products for the remaining sums over i and j) and saves the softmax it
needs from the forward pass, so it never recomputes an exp (docs/performance.md has the timings).
tests/test_mixture.py holds its values and gradients to autograd through the plain formula.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)

# Exponents are floored before exp. Below about −87 an fp32 exp underflows to a subnormal or
# zero and the CPU's vector exp takes a slow path (40× slower here), and products of tiny
# weights that stay subnormal slow every later pass (division, the backward's products) as
# much. A weight of e^−50 ≈ 2e−22 beside the largest, which is 1, is far below fp32 rounding
# (2^−24 ≈ 6e−8) even summed over 10^5 components, so the floor changes no value that fp32 can
# represent, and keeps the products of the backward pass normal numbers.
EXP_FLOOR = -50.0


def _add(x: torch.Tensor, y: torch.Tensor, inplace: bool) -> torch.Tensor:
    return x.add_(y) if inplace else x + y


def _exp_above(x: torch.Tensor, peak: torch.Tensor, inplace: bool) -> torch.Tensor:
    """exp(x − peak), the exponent floored at EXP_FLOOR (x overwritten when inplace)."""
    if inplace:
        return x.sub_(peak).clamp_min_(EXP_FLOOR).exp_()
    return torch.exp((x - peak).clamp_min(EXP_FLOOR))


class _MixtureLogDensity(torch.autograd.Function):
    # forward/setup_context kept apart, and only torch operations inside, so that torch.func's
    # vmap (packed trials on a GPU) can batch it by itself (generate_vmap_rule)
    generate_vmap_rule = True

    @staticmethod
    def forward(z, mu, logvar, log_w):
        # the block is laid out (D, B, J): the mixture's components last, so that the
        # reductions over j run along contiguous memory, and one matrix per dimension d
        precision = torch.exp(-logvar).T[:, None]  # (D, 1, J)
        diff = z.T[:, :, None] - mu.T[:, None]  # (D, B, J)
        block = torch.addcmul((-0.5 * (LOG_2PI + logvar.T))[:, None], diff.square(), precision,
                              value=-0.5)  # log N(z_id; j)
        # in place in eager mode (out of place, a CPU training step ran ~10 % slower); out of
        # place under torch.compile, which fuses the ops anyway and, where it meets vmap
        # (packed trials on a GPU), differentiates this forward itself
        eager = not torch.compiler.is_compiling()
        joint = _add(block.sum(0), log_w, eager)  # (B, J): log w_ij + log N(z_i; j)
        peak = joint.amax(1, keepdim=True)
        joint_softmax = _exp_above(joint, peak, eager)
        joint_total = joint_softmax.sum(1, keepdim=True)
        log_joint = (joint_total.log() + peak)[:, 0]
        joint_softmax = joint_softmax / joint_total
        block = _add(block, log_w, eager)
        peak = block.amax(2, keepdim=True)
        softmax = _exp_above(block, peak, eager)  # unnormalised, over j
        total = softmax.sum(2)  # (D, B)
        log_dims = (total.log() + peak[:, :, 0]).T
        return log_joint, log_dims, diff, softmax, total, joint_softmax

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, mu, logvar, _ = inputs
        _, _, diff, softmax, total, joint_softmax = output
        ctx.mark_non_differentiable(*output[2:])
        ctx.set_materialize_grads(False)  # no zero-filled (D, B, J) gradients for the saved outputs
        ctx.save_for_backward(z, mu, logvar, diff, softmax, total, joint_softmax)

    @staticmethod
    def backward(ctx, grad_joint, grad_dims, *_):
        z, mu, logvar, diff, softmax, total, joint_softmax = ctx.saved_tensors
        # unmaterialised: an output that the loss does not use has no gradient
        grad_joint = torch.zeros_like(total[0]) if grad_joint is None else grad_joint
        grad_dims = torch.zeros_like(total.T) if grad_dims is None else grad_dims
        precision = torch.exp(-logvar).T  # (D, J)
        by_joint = joint_softmax * grad_joint[:, None]  # (B, J)
        # grad[d, i, j] = d(both outputs)/d(block[d, i, j]); out of place: a second backward
        # through a retained graph must find the saved softmax intact
        grad = torch.addcmul(by_joint, softmax, (grad_dims.T / total)[:, :, None])
        grad_z = grad_mu = grad_logvar = grad_log_w = None
        if ctx.needs_input_grad[3]:
            grad_log_w = grad.sum(0) - (grad.shape[0] - 1) * by_joint
        # Σ_i G (D, J), taken before G is weighed in place below
        grad_sum_i = grad.sum(1) if ctx.needs_input_grad[2] else None
        weighted = grad.mul_(diff)  # G · (z − mu)
        if ctx.needs_input_grad[0]:
            grad_z = -torch.bmm(weighted, precision[:, :, None].contiguous())[:, :, 0].T
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            # Σ_i G (z − mu) and Σ_i G (z − mu) z_i in one product, then
            # Σ_i G (z − mu)² = Σ_i G (z − mu) z_i − mu Σ_i G (z − mu)
            # (D, 2, B) @ (D, B, J): the block stays the right operand, as laid out (its
            # transpose on the left would be copied first)
            ones_z = torch.stack([torch.ones_like(z.T), z.T], 1)  # (D, 2, B)
            sums = torch.bmm(ones_z, weighted)  # (D, 2, J)
            by_diff, by_diff_z = sums[:, 0], sums[:, 1]
            if ctx.needs_input_grad[1]:
                grad_mu = (precision * by_diff).T
            if ctx.needs_input_grad[2]:
                grad_logvar = (0.5 * (precision * (by_diff_z - mu.T * by_diff) - grad_sum_i)).T
        return grad_z, grad_mu, grad_logvar, grad_log_w


def mixture_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                        log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z (B, D) under the mixture Σ_j w_ij N(mu_j, diag exp(logvar_j)), mu and logvar (J, D),
    log weights log_w (B, J) (a row per sample: the MSS weights differ by row).

    Returns log q(z_i) (B,) and the per-dimension marginals log q(z_id) (B, D): the
    logsumexps over j of Σ_d log N(z_id; j) + log w_ij and of log N(z_id; j) + log w_ij.
    """
    log_joint, log_dims, *_ = _MixtureLogDensity.apply(z, mu, logvar, log_w)
    return log_joint, log_dims
