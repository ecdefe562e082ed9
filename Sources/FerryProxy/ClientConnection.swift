import NIOCore

/// A client connection the loop keeps track of, whatever protocol it speaks: the loop's sweep
/// fires its deadline, a drain or a stop reaches it.
protocol ClientConnection: AnyObject {
    /// Read by `ProxyLoopState.sweepDeadlines()`; nil when nothing is due.
    var deadline: NIODeadline? { get }
    func deadlinePassed()
    /// Stop taking requests, finish those in flight, then close.
    func drain()
    func forceClose()
}
