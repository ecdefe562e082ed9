import CSystemd
import FerryConfig
import CoreFoundation  // its copy of the C structs is the one in scope once FerryACME is linked
import Foundation
import Logging

/// The `ticket_keys` files of the configuration's TLS listeners: read by the master (workers may
/// have dropped the privileges the file needs), sent to the workers with their configuration, and
/// watched: when a file changes on disk (an operator's rotation, a Kubernetes Secret update) the
/// new keys reach every running worker without a reload. A file that turns unreadable or invalid
/// is reported and the keys in use stay.
struct TicketKeyFiles {
    struct Entry {
        var path: String
        var keys: [[UInt8]]
        var stamp: FileStamp?
    }

    /// Listener name → its file's keys.
    private(set) var entries: [String: Entry] = [:]

    init() {}

    /// Reads every listener's file; throws (with the listener and path) if one cannot be used.
    init(_ configuration: FerryConfiguration) throws {
        for listener in configuration.listeners {
            guard let path = listener.tls?.ticketKeysPath else { continue }
            let stamp = FileStamp(path: path)
            do {
                entries[listener.name] = Entry(path: path, keys: try TicketKeyFile.read(path: path), stamp: stamp)
            } catch {
                throw TicketKeyFile.Failure(
                    line: nil, reason: "listener '\(listener.name)': ticket_keys '\(path)': \(error)")
            }
        }
    }

    /// Listener name → keys in base64, for the worker's `configure`.
    var encoded: [String: [String]] {
        entries.mapValues { $0.keys.map { Data($0).base64EncodedString() } }
    }

    enum Change {
        case replaced(listener: String, path: String, keys: [[UInt8]])
        case refused(listener: String, path: String, reason: String)
    }

    /// Re-reads the files whose identity, size or modification time changed since last read.
    mutating func refresh() -> [Change] {
        var changes: [Change] = []
        for (listener, entry) in entries {
            let stamp = FileStamp(path: entry.path)
            guard stamp != entry.stamp else { continue }
            entries[listener]?.stamp = stamp
            do {
                let keys = try TicketKeyFile.read(path: entry.path)
                guard keys != entry.keys else { continue }
                entries[listener]?.keys = keys
                changes.append(.replaced(listener: listener, path: entry.path, keys: keys))
            } catch {
                changes.append(.refused(listener: listener, path: entry.path, reason: "\(error)"))
            }
        }
        return changes
    }
}

/// What tells a file apart from its previous version: a rename over it (`ferry tls
/// generate-ticket-key`, a Kubernetes Secret's symlink swap) changes the inode; an edit in place
/// changes size or mtime.
struct FileStamp: Equatable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modified: timespec

    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modified = info.st_mtim
    }

    static func == (left: FileStamp, right: FileStamp) -> Bool {
        left.device == right.device && left.inode == right.inode && left.size == right.size
            && left.modified.tv_sec == right.modified.tv_sec && left.modified.tv_nsec == right.modified.tv_nsec
    }
}

extension Master {
    /// On the master's tick: a changed `ticket_keys` file goes to every worker.
    func refreshTicketKeyFiles() {
        for change in ticketKeyFiles.refresh() {
            switch change {
            case .replaced(let listener, let path, let keys):
                logger.notice(
                    "session ticket keys reloaded",
                    metadata: ["listener": "\(listener)", "path": "\(path)", "keys": "\(keys.count)"])
                broadcast(.ticketKeys(listener: listener, keys: keys.map { Data($0).base64EncodedString() }))
            case .refused(let listener, let path, let reason):
                logger.error(
                    "session ticket keys not reloaded; the keys in use stay",
                    metadata: ["listener": "\(listener)", "path": "\(path)", "error": "\(reason)"])
            }
        }
    }
}
