/// Namespace marker for the FerryTLS module; its types live in their own files.
public enum FerryTLSModule {
    public static let name = "FerryTLS"
}
