import FerryConfig
import NIOCore
import NIOHTTP1

/// Closes a tunnel with no traffic in either direction for `timeout`.
///
/// Traffic only sets a flag (no clock read, no timer per message); the loop's sweep turns the flag
/// into a timestamp once per tick, so the timeout is exact to within one sweep interval.
final class TunnelIdleTimer {
    let timeout: TimeAmount
    let client: any Channel
    let upstream: any Channel
    private var lastActivity = NIODeadline.now()
    private var sawActivity = false

    init(timeout: TimeAmount, client: any Channel, upstream: any Channel) {
        self.timeout = timeout
        self.client = client
        self.upstream = upstream
    }

    func touch() { sawActivity = true }

    /// Called by the loop's sweep: closes both sides once the tunnel has been quiet for `timeout`.
    func sweep(now: NIODeadline) {
        if sawActivity {
            sawActivity = false
            lastActivity = now
        } else if now - lastActivity >= timeout {
            client.close(promise: nil)
            upstream.close(promise: nil)
        }
    }
}

extension Duration {
    var timeAmount: TimeAmount { .milliseconds(wholeMilliseconds) }
}
