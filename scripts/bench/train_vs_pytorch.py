"""PyTorch-eager twin of agents/examples/bench_train_step.rs: the same CoT transformer
(pre-LN, no biases, fused qkv, SiLU MLP, learned positions, difficulty token, causal decoder
with cross-attention), the same synthetic Cycle batches and the same CotSupervised step
(masked log-softmax CE over valid steps, backward, global-norm clip 1.0, AdamW with weight
decay on matrices only). Written as idiomatic eager PyTorch: nn.Module, F.linear,
F.scaled_dot_product_attention, torch.optim.AdamW with its default (for-loop on CPU)
implementation.

Run with the bundled torch: PYTHONPATH=$FACTOREXE_CACHE/python-torch-2.13.0 python3 <this>.
Prints `RESULT kind=train impl=pytorch examples_per_s=...`.
"""

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn


def lecun_(w):
    fan_in = w.shape[1]
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std)
    return w


class Linear(nn.Module):
    def __init__(self, inp, out):
        super().__init__()
        self.weight = nn.Parameter(lecun_(torch.empty(out, inp)))

    def forward(self, x):
        return F.linear(x, self.weight)


class Norm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(d))
        self.d = d

    def forward(self, x):
        return F.layer_norm(x, (self.d,), self.scale, None, 1e-6)


class Mlp(nn.Module):
    def __init__(self, d, m):
        super().__init__()
        self.up, self.down = Linear(d, m), Linear(m, d)

    def forward(self, x):
        return self.down(F.silu(self.up(x)))


class DecoderLayer(nn.Module):
    def __init__(self, heads, hd, m):
        super().__init__()
        d = heads * hd
        self.heads, self.hd, self.d = heads, hd, d
        self.ln_self, self.ln_cross_q, self.ln_cross_kv, self.ln_mlp = (Norm(d) for _ in range(4))
        self.qkv, self.self_out = Linear(d, 3 * d), Linear(d, d)
        self.q, self.kv, self.cross_out = Linear(d, d), Linear(d, 2 * d), Linear(d, d)
        self.mlp = Mlp(d, m)

    def split(self, x, n):
        b, t, _ = x.shape
        return x.view(b, t, n, self.heads, self.hd).permute(2, 0, 3, 1, 4)

    def merge(self, x):
        b, _, t, _ = x.shape
        return x.transpose(1, 2).reshape(b, t, self.d)

    def memory_kv(self, memory):
        return self.kv(self.ln_cross_kv(memory))

    def forward(self, h, kv):
        q, k, v = self.split(self.qkv(self.ln_self(h)), 3)
        h = h + self.self_out(self.merge(F.scaled_dot_product_attention(q, k, v, is_causal=True)))
        k, v = self.split(kv, 2)
        q = self.split(self.q(self.ln_cross_q(h)), 1)[0]
        h = h + self.cross_out(self.merge(F.scaled_dot_product_attention(q, k, v)))
        return h + self.mlp(self.ln_mlp(h))


class CotTransformer(nn.Module):
    def __init__(self, a):
        super().__init__()
        d = a.heads * a.head_dim
        m = int(a.mlp_factor * d)
        L = a.input_len
        emb = lambda n: nn.Parameter(torch.randn(n, d) / math.sqrt(d))
        self.tok, self.pos, self.difficulty = emb(L), emb(L), emb(a.max_hops)
        self.dec_tok, self.dec_pos = emb(L + 2), emb(a.max_hops + 2)
        self.layers = nn.ModuleList(DecoderLayer(a.heads, a.head_dim, m) for _ in range(a.decoder_layers))
        self.repeat = a.repeat
        self.factored = a.factored
        self.norm = Norm(d)
        self.chain_head, self.value_head = Linear(d, L + 1), Linear(d, 1)

    def forward(self, inp, difficulty, prev):
        h = self.dec_tok[prev] + self.dec_pos[: prev.shape[1]]
        if self.factored:
            # The Rust model's trick (off by default): per-row work on the table of distinct
            # (token, position) memory rows, then a gather.
            V, L = self.tok.shape[0], self.pos.shape[0]
            table = torch.cat([(self.tok[:, None] + self.pos[None]).view(V * L, -1), self.difficulty])
            rows = torch.cat([inp * L + torch.arange(L), (difficulty + V * L)[:, None]], 1).view(-1)
            b, s = inp.shape[0], L + 1
            kvs = [layer.memory_kv(table)[rows].view(b, s, -1) for layer in self.layers]
        else:
            memory = torch.cat([self.tok[inp] + self.pos, self.difficulty[difficulty].unsqueeze(1)], 1)
            kvs = [layer.memory_kv(memory) for layer in self.layers]
        for _ in range(self.repeat):
            for layer, kv in zip(self.layers, kvs):
                h = layer(h, kv)
        h = self.norm(h)
        return self.chain_head(h), self.value_head(h).squeeze(-1)


def cycle_batch(gen, b, L, max_hops):
    """Same construction as the Rust bench (a random single cycle; hops uniform)."""
    t = max_hops + 2
    answer = L
    order = torch.stack([torch.randperm(L, generator=gen) for _ in range(b)])
    f = torch.empty(b, L, dtype=torch.long)
    f.scatter_(1, order, order.roll(-1, 1))
    hops = torch.randint(1, max_hops + 1, (b,), generator=gen)
    actions = torch.zeros(b, t, dtype=torch.long)
    valid = torch.zeros(b, t)
    mask = torch.zeros(b, t, L + 1, dtype=torch.bool)
    prev = torch.full((b, t), L + 1, dtype=torch.long)
    for i in range(b):
        node, h, row = 0, int(hops[i]), []
        for _ in range(h):
            node = int(f[i, node])
            row.append(node)
        row += [answer, int(f[i, node])]
        actions[i, : len(row)] = torch.tensor(row)
        valid[i, : len(row)] = 1
        prev[i, 1 : len(row)] = torch.tensor(row[:-1])
        mask[i, : len(row)] = True
        mask[i, h + 1, L] = False
    return f, hops - 1, prev, actions, mask, valid


def main():
    p = argparse.ArgumentParser()
    for k, v in dict(batch=512, heads=4, head_dim=32, decoder_layers=2, mlp_factor=4.0, repeat=1,
                     input_len=40, max_hops=5, steps=20, warmup=3, threads=2).items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--factored", action="store_true",
                   help="gather cross-attention K/V from the (token, position) table, as the Rust model does")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = CotTransformer(a)
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-4},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-3, eps=1e-8)
    gen = torch.Generator().manual_seed(1)
    batches = [cycle_batch(gen, a.batch, a.input_len, a.max_hops) for _ in range(4)]

    def step(bt):
        inp, diff, prev, targets, mask, valid = bt
        opt.zero_grad(set_to_none=False)
        logits, _ = model(inp, diff, prev)
        logp = logits.masked_fill(~mask, -1e9).log_softmax(-1)
        ce = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        loss = (ce * valid).sum() / valid.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for i in range(a.warmup):
        step(batches[i % 4])
    if a.profile:
        with torch.profiler.profile() as prof:
            for i in range(3):
                step(batches[i % 4])
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    start, cpu0 = time.perf_counter(), time.process_time()
    for i in range(a.steps):
        loss = step(batches[i % 4])
    secs = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    params = sum(q.numel() for q in model.parameters())
    impl = "pytorch_factored" if a.factored else "pytorch"
    print(f"RESULT kind=train impl={impl} examples_per_s={a.steps * a.batch / secs:.1f} "
          f"step_ms={1e3 * secs / a.steps:.2f} examples_per_cpu_s={a.steps * a.batch / cpu:.1f} "
          f"params={params} loss={loss:.4f}")


if __name__ == "__main__":
    main()
