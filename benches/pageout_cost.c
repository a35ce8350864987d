// Page-out cost of process_madvise(MADV_PAGEOUT) from another process, wall vs CPU time, by call size,
// with the target idle or running a reader thread (docs/performance.md "Demo", "CPU time"). Needs swap.
// Build and run (root): gcc -O2 -o /tmp/pageout_cost benches/pageout_cost.c && /tmp/pageout_cost 512 1
// Args: MiB to page out (split into 8 parts), 1 = target runs a reader thread, 0 = idle.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <signal.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#define MADV_PAGEOUT 21
static double ts(clockid_t c){struct timespec t;clock_gettime(c,&t);return t.tv_sec*1e9+t.tv_nsec;}
int main(int argc,char**argv){
  size_t sz=(size_t)atoi(argv[1])<<20, hsz=26<<20; int reader=atoi(argv[2]);
  char*p=mmap(0,sz+hsz,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  int pipefd[2]; pipe(pipefd);
  pid_t c=fork();
  if(!c){ madvise(p,sz+hsz,MADV_NOHUGEPAGE);
    for(size_t i=0;i<sz+hsz;i+=4096){ for(int j=0;j<4096;j+=8) *(long*)(p+i+j)= (i/4096)*(j%64); }
    write(pipefd[1],"x",1);
    unsigned long x=1,s=0; char*hot=p+sz; if(reader) for(;;){x=x*6364136223846793005UL+1;s+=hot[(x>>16)%hsz];}
    for(;;) pause(); }
  char b; read(pipefd[0],&b,1);
  int pfd=syscall(434,c,0);
  size_t chunks[]={64<<10,256<<10,1<<20,4<<20};
  for(int rep=0;rep<2;rep++) for(int ci=0;ci<4;ci++){
    size_t chunk=chunks[ci]; size_t part=sz/8; size_t base=(rep*4+ci)*part;
    double w=0,cp=0;
    for(size_t off=0;off<part;off+=chunk){
      struct iovec iv={p+base+off,chunk};
      double w0=ts(CLOCK_MONOTONIC),c0=ts(CLOCK_THREAD_CPUTIME_ID);
      long r=syscall(440,pfd,&iv,1,MADV_PAGEOUT,0); if(r<0){perror("pm");return 1;}
      w+=ts(CLOCK_MONOTONIC)-w0; cp+=ts(CLOCK_THREAD_CPUTIME_ID)-c0;
    }
    printf("reader %d chunk %4zu KiB: %zu MiB wall %.3f MiB/ms cpu %.3f MiB/ms\n",reader,chunk>>10,part>>20,(part>>20)/(w/1e6),(part>>20)/(cp/1e6));
  }
  kill(c,9); waitpid(c,0,0);
}
