// The emulator's small built-in public template library for /wxaapi/newtmpl/* (wechat-spec.md §2.6).

/** A category of the public library (`getcategory`). */
export type LibraryCategory = { id: number; name: string };
/** A keyword of a public template (`getpubtemplatekeywords`); `rule` is the keyword type (§2.5). */
export type LibraryKeyword = {
  kid: number;
  name: string;
  example: string;
  rule: string;
  enumValues?: string[];
};
/** A public template title (`getpubtemplatetitles`); type 2 = one-time, 3 = long-term. */
export type LibraryTitle = {
  tid: number;
  title: string;
  type: 2 | 3;
  categoryId: number;
  keywords: LibraryKeyword[];
};

/** Categories of the built-in library. */
export const LIBRARY_CATEGORIES: readonly LibraryCategory[] = [
  { id: 616, name: '公交' },
  { id: 307, name: '快递、物流' },
  { id: 411, name: '政务民生' },
];

/** Public templates of the built-in library. */
export const LIBRARY_TITLES: readonly LibraryTitle[] = [
  {
    tid: 1001,
    title: '到站提醒',
    type: 2,
    categoryId: 616,
    keywords: [
      { kid: 1, name: '线路', example: '23路', rule: 'thing' },
      { kid: 2, name: '到站时间', example: '15:01', rule: 'time' },
      { kid: 3, name: '车牌号', example: '粤A8Z888', rule: 'car_number' },
      { kid: 4, name: '站点', example: '科技园站', rule: 'thing' },
    ],
  },
  {
    tid: 2001,
    title: '物流状态通知',
    type: 2,
    categoryId: 307,
    keywords: [
      { kid: 1, name: '物品名称', example: '书籍', rule: 'thing' },
      { kid: 2, name: '运单号', example: 'SF1234567890', rule: 'character_string' },
      { kid: 3, name: '物流状态', example: '配送中', rule: 'phrase' },
      { kid: 4, name: '更新时间', example: '2019年10月1日 15:01', rule: 'date' },
      { kid: 5, name: '联系电话', example: '+86-0766-66888866', rule: 'phone_number' },
      { kid: 6, name: '件数', example: '2', rule: 'number' },
    ],
  },
  {
    tid: 2002,
    title: '订单支付成功通知',
    type: 2,
    categoryId: 307,
    keywords: [
      { kid: 1, name: '订单号', example: 'A20240101', rule: 'character_string' },
      { kid: 2, name: '支付金额', example: '¥99.00', rule: 'amount' },
      { kid: 3, name: '收货人', example: '张三', rule: 'name' },
      { kid: 4, name: '支付时间', example: '2019-10-01 15:01', rule: 'time' },
    ],
  },
  {
    tid: 3001,
    title: '办事进度通知',
    type: 3,
    categoryId: 411,
    keywords: [
      { kid: 1, name: '事项名称', example: '居住证办理', rule: 'thing' },
      {
        kid: 2,
        name: '办理进度',
        example: '已受理',
        rule: 'enum',
        enumValues: ['已受理', '办理中', '已办结'],
      },
      { kid: 3, name: '更新日期', example: '2024年1月1日', rule: 'date' },
      { kid: 4, name: '备注', example: 'A', rule: 'letter' },
      { kid: 5, name: '标记', example: '★', rule: 'symbol' },
    ],
  },
];

/** Looks up a library title by tid. */
export function findLibraryTitle(tid: number): LibraryTitle | undefined {
  return LIBRARY_TITLES.find((t) => t.tid === tid);
}
