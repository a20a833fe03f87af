import NIOCore

/// Runs a task's jobs on a NIO event loop, so that a request's socket reads and writes resume
/// where NIO completes them instead of hopping to Swift's cooperative pool and back (each hop
/// measured about 22 µs here). Only code that never blocks may run this way; blocking libvirt
/// calls still go to their own threads.
final class EventLoopExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
