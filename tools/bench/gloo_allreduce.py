"""Gloo all-reduce latency between ranks of this machine (Debian's torch).

usage: /usr/bin/python3 -m torch.distributed.run --nproc_per_node=2 \
           --redirects=2 --tee=2 tools/bench/gloo_allreduce.py
"""
import os, time, torch, torch.distributed as dist
dist.init_process_group('gloo')
torch.set_num_threads(1)
for n in [105_000, 420_000, 1_600_000]:
    t = torch.randn(n)
    for _ in range(10): dist.all_reduce(t)
    dist.barrier(); t0=time.time()
    for _ in range(100): dist.all_reduce(t)
    dt=(time.time()-t0)/100
    if dist.get_rank()==0: print(f'{n*4/1e6:.2f} MB: {dt*1e3:.2f} ms, {n*4/dt/1e9:.2f} GB/s algbw')
