import Foundation

#if canImport(Glibc)
    import Glibc
    import CoreFoundation  // its copy of the C structs is the one in scope once FerryACME is linked
#endif

/// Gives the heap a worker has freed back to the kernel once it has freed a lot of it.
///
/// glibc returns freed memory to the kernel only from the top of a heap. Memory freed in the
/// middle (what thousands of closed connections leave, or the TLS buffers a burst grew and the
/// connection gave back once idle) stays in the process's resident set for good: a worker that
/// held 2,000 WebSockets was still 45 MB larger after all of them had closed, and 3 MB larger after
/// one `malloc_trim(0)`. Operators read that resident set (systemd's `MemoryCurrent`, `top`,
/// `MemoryMax=`), so after a spike it must come down.
///
/// The worker tallies what its connections release (an estimate, see `TLSCounters`) and calls
/// `tick(released:)` four times a second; when it says so, the worker calls `trim()`. A closed
/// connection is counted when it goes inactive, but its memory is freed a little later, once NIO
/// lets go of the channel, so the trim waits for a quiet tick (less than `quietBelow` released in
/// it) after the tally passed `threshold`: trimming in the same tick found nothing to
/// give back. Trimming is not free (it walks the free lists and madvises whole free pages away,
/// which the next allocations fault back in: 4 ms for 42 MB here), hence the threshold; a worker
/// that keeps churning connections reuses what it frees and is trimmed only every
/// `8 × threshold` released.
public struct HeapTrimmer: Sendable {
    /// Released bytes (estimated) after which the next quiet tick trims.
    public let threshold: Int
    /// A tick that released less than this is quiet.
    public let quietBelow: Int
    private var released = 0

    /// `quietBelow` defaults to a quarter of `threshold` (2 MiB for a one-second tick); a shorter
    /// tick takes a proportionally smaller one.
    public init(threshold: Int = 8 << 20, quietBelow: Int? = nil) {
        self.threshold = threshold
        self.quietBelow = quietBelow ?? threshold / 4
    }

    /// Adds what was released since the last tick; true when the heap should be trimmed now (the
    /// tally then starts again).
    public mutating func tick(released bytes: Int) -> Bool {
        let now = max(0, bytes)
        released += now
        let quiet = now < quietBelow
        guard released >= threshold && quiet || released >= 8 * threshold else { return false }
        released = 0
        return true
    }

    /// Returns the free pages of every malloc arena to the kernel (`malloc_trim(0)`); false where
    /// the C library has no `malloc_trim` (it is a glibc extension, looked up at run time).
    @discardableResult
    public static func trim() -> Bool {
        guard let trim = mallocTrim else { return false }
        _ = trim(0)
        return true
    }

    private typealias MallocTrim = @convention(c) (Int) -> CInt

    private static let mallocTrim: MallocTrim? = {
        #if canImport(Glibc)
            guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
            return unsafeBitCast(symbol, to: MallocTrim.self)
        #else
            return nil
        #endif
    }()

    /// This process's resident set in bytes (`/proc/self/statm`), for the log line of a trim.
    public static func residentBytes() -> Int? {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = statm.split(separator: " ")
        guard fields.count >= 2, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
