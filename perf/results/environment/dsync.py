import os, mmap, time, sys
cpu=int(sys.argv[1]); n=int(sys.argv[2])
os.sched_setaffinity(0,{cpu})
path='/tmp/p/dsync.dat'
fd=os.open(path, os.O_RDWR|os.O_CREAT|os.O_DIRECT|os.O_DSYNC, 0o644)
buf=mmap.mmap(-1,4096); buf.write(b'x'*4096)
os.pwrite(fd,buf,0)
lat=[]
for i in range(n):
    t=time.perf_counter_ns(); os.pwrite(fd,buf,0); lat.append(time.perf_counter_ns()-t)
lat.sort(); print(f"cpu{cpu}: p50 {lat[n//2]/1000:.1f} p90 {lat[n*9//10]/1000:.1f} p99 {lat[n*99//100]/1000:.1f} us")
