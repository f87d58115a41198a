package omnistream.peer;

/** An output of the keyed stage (what omnistream writes to outputs.jsonl): counted, then dropped. */
public class Out {
    public static final int POINTS = 1;
    public static final int STOCK_CHANGED = 2;
    public static final int RESERVE_REFUSED = 3;
    public static final int SCAN_ALLOW = 4;
    public static final int SCAN_DUPLICATE = 5;
    public static final int STOCK_LOW = 6;

    public int kind;
    public String key;
    public long value;
    public long ts;

    public Out() {}

    Out(int kind, String key, long value, long ts) {
        this.kind = kind;
        this.key = key;
        this.value = value;
        this.ts = ts;
    }
}
