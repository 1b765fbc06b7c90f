#!/usr/bin/env python3
"""Baseline: one first-order DARTS recurrent search iteration in eager PyTorch.

An independent PyTorch implementation of the RNN search step described in
shared/SPEC.md (sections 7.2-7.4 and 7.7), written after the structure of the
reference (DARTS rnn/model_search.py, rnn/model.py, rnn/architect.py,
rnn/train_search.py): tied embedding/decoder, embedding dropout, locked
dropouts, variational x/h masks drawn once per forward, DARTSCellSearch with 8
nodes (36 edges), one shared BatchNorm1d(affine=False), softmax over the 5
primitives recomputed every time step, one shared W matrix per node and every
non-`none` op evaluated separately on the stacked sources of a node, a Python
loop over time steps.

One iteration: an alpha step (Adam, first order: NLL of the alpha batch,
backward, step; as in the reference the weights are not frozen, their
gradients are discarded by the next zero_grad) on an alpha batch of bptt rows,
then a weight step (NLL + TAR, backward, sum of squared gradients as SPEC 7.7
step 8, clip 0.25, SGD at lr 20 scaled by seq_len / bptt) on a training batch.
Both hidden states are carried (detached) from one iteration to the next.
Token ids are synthetic (timing only).

Usage:
  python3 pytorch_rnn_search_step.py [--device cpu|cuda] [--vocab 10000]
                                     [--nhid 300] [--batch 256] [--bptt 35]
                                     [--iters 10] [--warmup 2] [--threads N]
Prints one JSON line: params, median/min/max seconds per iteration, tokens/s.
"""
import argparse, json, statistics, time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRIMITIVES = ["none", "tanh", "relu", "sigmoid", "identity"]
STEPS = 8
CONCAT = 8
INITRANGE = 0.04


def activation(name):
    return {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
            "identity": lambda x: x}[name]


def mask2d(like, b, d, keep):
    return like.new_empty(b, d).bernoulli_(keep).div_(keep)


def locked_dropout(x, p, training):
    if not training or not p:
        return x
    m = x.new_empty(1, x.size(1), x.size(2)).bernoulli_(1 - p).div_(1 - p)
    return m.expand_as(x) * x


def embedded_dropout(embed, words, p, training):
    weight = embed.weight
    if training and p:
        mask = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p).expand_as(weight) / (1 - p)
        weight = mask * weight
    return F.embedding(words, weight)


class DARTSCellSearch(nn.Module):
    def __init__(self, ninp, nhid, dropouth, dropoutx):
        super().__init__()
        self.nhid, self.dropouth, self.dropoutx = nhid, dropouth, dropoutx
        self._W0 = nn.Parameter(torch.empty(ninp + nhid, 2 * nhid).uniform_(-INITRANGE, INITRANGE))
        self._Ws = nn.ParameterList(
            nn.Parameter(torch.empty(nhid, 2 * nhid).uniform_(-INITRANGE, INITRANGE))
            for _ in range(STEPS))
        self.bn = nn.BatchNorm1d(nhid, affine=False)
        self.weights = None  # the model's alphas, set by the model

    def forward(self, inputs, hidden):
        t_len, b = inputs.size(0), inputs.size(1)
        if self.training:
            x_mask = mask2d(inputs, b, inputs.size(2), 1.0 - self.dropoutx)
            h_mask = mask2d(inputs, b, hidden.size(2), 1.0 - self.dropouth)
        else:
            x_mask = h_mask = None
        hidden = hidden[0]
        hiddens = []
        for t in range(t_len):
            hidden = self.cell(inputs[t], hidden, x_mask, h_mask)
            hiddens.append(hidden)
        hiddens = torch.stack(hiddens)
        return hiddens, hiddens[-1].unsqueeze(0)

    def _compute_init_state(self, x, h_prev, x_mask, h_mask):
        if self.training:
            xh_prev = torch.cat([x * x_mask, h_prev * h_mask], dim=-1)
        else:
            xh_prev = torch.cat([x, h_prev], dim=-1)
        c0, h0 = torch.split(xh_prev.mm(self._W0), self.nhid, dim=-1)
        c0, h0 = c0.sigmoid(), h0.tanh()
        return h_prev + c0 * (h0 - h_prev)

    def cell(self, x, h_prev, x_mask, h_mask):
        s0 = self.bn(self._compute_init_state(x, h_prev, x_mask, h_mask))
        probs = F.softmax(self.weights, dim=-1)
        offset, states = 0, s0.unsqueeze(0)
        for i in range(STEPS):
            masked = states * h_mask.unsqueeze(0) if self.training else states
            ch = masked.view(-1, self.nhid).mm(self._Ws[i]).view(i + 1, -1, 2 * self.nhid)
            c, h = torch.split(ch, self.nhid, dim=-1)
            c = c.sigmoid()
            s = torch.zeros_like(s0)
            for k, name in enumerate(PRIMITIVES):
                if name == "none":
                    continue
                unweighted = states + c * (activation(name)(h) - states)
                s += torch.sum(probs[offset:offset + i + 1, k].unsqueeze(-1).unsqueeze(-1)
                               * unweighted, dim=0)
            s = self.bn(s)
            states = torch.cat([states, s.unsqueeze(0)], 0)
            offset += i + 1
        return torch.mean(states[-CONCAT:], dim=0)


class RNNModelSearch(nn.Module):
    def __init__(self, ntoken, nhid, dropout=0.75, dropouth=0.25, dropoutx=0.75,
                 dropouti=0.2, dropoute=0.0):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, nhid)
        self.rnns = nn.ModuleList([DARTSCellSearch(nhid, nhid, dropouth, dropoutx)])
        self.decoder = nn.Linear(nhid, ntoken)
        self.decoder.weight = self.encoder.weight
        self.encoder.weight.data.uniform_(-INITRANGE, INITRANGE)
        self.decoder.bias.data.fill_(0)
        self.decoder.weight.data.uniform_(-INITRANGE, INITRANGE)
        self.ntoken, self.nhid = ntoken, nhid
        self.dropout, self.dropouti, self.dropoute = dropout, dropouti, dropoute
        k = sum(i for i in range(1, STEPS + 1))
        self.arch_weights = (1e-3 * torch.randn(k, len(PRIMITIVES))).requires_grad_()
        for rnn in self.rnns:
            rnn.weights = self.arch_weights

    def to_device(self, dev):
        self.to(dev)
        self.arch_weights = self.arch_weights.detach().to(dev).requires_grad_()
        for rnn in self.rnns:
            rnn.weights = self.arch_weights
        return self

    def init_hidden(self, bsz):
        w = next(self.parameters())
        return [w.new_zeros(1, bsz, self.nhid)]

    def forward(self, inputs, hidden, return_h=False):
        batch_size = inputs.size(1)
        emb = embedded_dropout(self.encoder, inputs, self.dropoute, self.training)
        raw_output = locked_dropout(emb, self.dropouti, self.training)
        new_hidden, raw_outputs = [], []
        for layer, rnn in enumerate(self.rnns):
            raw_output, new_h = rnn(raw_output, hidden[layer])
            new_hidden.append(new_h)
            raw_outputs.append(raw_output)
        output = locked_dropout(raw_output, self.dropout, self.training)
        log_prob = F.log_softmax(self.decoder(output.view(-1, self.nhid)), dim=-1)
        log_prob = log_prob.view(-1, batch_size, self.ntoken)
        if return_h:
            return log_prob, new_hidden, raw_outputs, [output]
        return log_prob, new_hidden

    def _loss(self, hidden, inputs, target):
        log_prob, hidden_next = self(inputs, hidden)
        return F.nll_loss(log_prob.view(-1, log_prob.size(2)), target), hidden_next


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--nhid", type=int, default=300)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--bptt", type=int, default=35)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.manual_seed(3)
    model = RNNModelSearch(a.vocab, a.nhid).to_device(dev)
    lr, clip, beta = 20.0, 0.25, 1e-3
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=5e-7)
    arch_optimizer = torch.optim.Adam([model.arch_weights], lr=3e-3, betas=(0.9, 0.999),
                                      weight_decay=1e-3)
    # bptt + 1 rows of synthetic ids per stream: inputs are rows 0..bptt-1, targets 1..bptt.
    data = torch.randint(0, a.vocab, (a.bptt + 1, a.batch), device=dev)
    data_valid = torch.randint(0, a.vocab, (a.bptt + 1, a.batch), device=dev)
    cp, cp_targets = data[:-1], data[1:].reshape(-1)
    cp_valid, cp_valid_targets = data_valid[:-1], data_valid[1:].reshape(-1)
    hidden, hidden_valid = model.init_hidden(a.batch), model.init_hidden(a.batch)
    seq_len = a.bptt

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for it in range(a.warmup + a.iters):
        sync()
        t0 = time.perf_counter()
        model.train()
        optimizer.param_groups[0]["lr"] = lr * seq_len / a.bptt
        hidden_valid = [h.detach() for h in hidden_valid]
        hidden = [h.detach() for h in hidden]
        # architect.step, first order
        arch_optimizer.zero_grad()
        loss_valid, hidden_valid = model._loss(hidden_valid, cp_valid, cp_valid_targets)
        loss_valid.backward()
        arch_optimizer.step()
        # weight step
        optimizer.zero_grad()
        log_prob, hidden, rnn_hs, _ = model(cp, hidden, return_h=True)
        raw_loss = F.nll_loss(log_prob.view(-1, log_prob.size(2)), cp_targets)
        loss = raw_loss + sum(beta * (h[1:] - h[:-1]).pow(2).mean() for h in rnn_hs[-1:])
        loss.backward()
        fi = sum(p.grad.pow(2).sum() for p in model.parameters() if p.grad is not None)
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        optimizer.param_groups[0]["lr"] = lr
        sync()
        if it >= a.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({
        "impl": "pytorch-eager", "bench": "rnn-search-step", "device": str(dev),
        "threads": torch.get_num_threads(), "vocab": a.vocab, "nhid": a.nhid,
        "batch": a.batch, "bptt": a.bptt,
        "params": sum(p.numel() for p in model.parameters()),
        "median_s": round(med, 5), "min_s": round(min(times), 5), "max_s": round(max(times), 5),
        "tokens_per_s": round(2 * a.batch * a.bptt / med, 2), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
